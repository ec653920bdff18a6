// One syscall error policy, in one place (STYLE 12).
//
// The shim returns >= 0 or -errno. Here:
//   EINTR          retried, always;
//   EAGAIN         becomes `.wouldBlock` (a normal outcome for non-blocking fds);
//   EBADF, EFAULT  are our bug (a closed or foreign fd, a bad pointer): they throw
//                  `SyscallError` with `isBug == true`; the reactor answers by
//                  dropping the registration that hit it and reporting it with
//                  the call's name, instead of crashing the whole loop;
//   anything else  throws `SyscallError(call, errno)`.
import CReactor

public struct SyscallError: Error, CustomStringConvertible, Sendable, Equatable {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// EBADF/EFAULT: the program handed the kernel something it should not have.
    public var isBug: Bool { errno == EBADF_ || errno == EFAULT_ }
    public var description: String { "\(call): \(Errno.name(errno)) (errno \(errno))" }
}

/// What a non-blocking call did.
public enum IOResult: Equatable, Sendable {
    case done(Int)
    case wouldBlock
}

let EINTR_: Int32 = 4
let EAGAIN_: Int32 = 11
let EBADF_: Int32 = 9
let EFAULT_: Int32 = 14
let ENOBUFS_: Int32 = 105
let ECONNREFUSED_: Int32 = 111
let EMSGSIZE_: Int32 = 90
let EINVAL_: Int32 = 22
let EIO_: Int32 = 5

/// Runs a shim call under the policy. `body` returns the shim's value (>= 0 or -errno).
@inline(__always)
public func syscall(_ call: StaticString, _ body: () -> Int32) throws(SyscallError) -> IOResult {
    while true {
        let r = body()
        if r >= 0 { return .done(Int(r)) }
        switch -r {
        case EINTR_: continue
        case EAGAIN_: return .wouldBlock
        default: throw SyscallError(call: "\(call)", errno: -r)
        }
    }
}

/// For calls where EAGAIN is itself an error (setup: socket, bind, ioctl...).
@inline(__always)
public func syscallValue(_ call: StaticString, _ body: () -> Int32) throws(SyscallError) -> Int32 {
    switch try syscall(call, body) {
    case .done(let v): return Int32(v)
    case .wouldBlock: throw SyscallError(call: "\(call)", errno: EAGAIN_)
    }
}

public enum Errno {
    /// Short symbolic names for the errnos a network daemon meets.
    public static func name(_ e: Int32) -> String {
        switch e {
        case 1: return "EPERM"
        case 2: return "ENOENT"
        case 4: return "EINTR"
        case 5: return "EIO"
        case 9: return "EBADF"
        case 11: return "EAGAIN"
        case 12: return "ENOMEM"
        case 13: return "EACCES"
        case 14: return "EFAULT"
        case 16: return "EBUSY"
        case 17: return "EEXIST"
        case 19: return "ENODEV"
        case 22: return "EINVAL"
        case 24: return "EMFILE"
        case 36: return "ENAMETOOLONG"
        case 90: return "EMSGSIZE"
        case 92: return "ENOPROTOOPT"
        case 95: return "EOPNOTSUPP"
        case 97: return "EAFNOSUPPORT"
        case 98: return "EADDRINUSE"
        case 99: return "EADDRNOTAVAIL"
        case 101: return "ENETUNREACH"
        case 103: return "ECONNABORTED"
        case 104: return "ECONNRESET"
        case 105: return "ENOBUFS"
        case 111: return "ECONNREFUSED"
        case 113: return "EHOSTUNREACH"
        case 125: return "ECANCELED"
        default: return "errno"
        }
    }
}
