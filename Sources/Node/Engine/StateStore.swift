// The node's state directory (`node.state_dir`): the cache of last-known
// endpoints that recovery falls back on after the anchors (seed 3.1, 3.5).
// Written atomically — a temporary file in the same directory, fsync, rename,
// fsync of the directory — so a crash leaves either the old file or the new
// one, never half of one.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Foundation
import Logging

struct StateStore {
    let directory: String
    let logger: Logger
    var path: String { directory + "/endpoints.json" }

    init?(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            logger.warning("state: cannot create \(directory): \(error); endpoints will not survive a restart")
            return nil
        }
    }

    func load() -> [UInt8]? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        return [UInt8](d)
    }

    func save(_ bytes: [UInt8]) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            logger.warning("state: cannot write \(tmp): \(String(cString: strerror(errno)))")
            return
        }
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            logger.warning("state: cannot replace \(path): \(String(cString: strerror(errno)))")
            unlink(tmp)
            return
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }
}

/// The host's own interface addresses (candidates of kind `local`), skipping
/// loopback, link-local IPv6 and our own TUN interface.
enum LocalAddresses {
    static func list(excluding tunName: String) -> [(family: Endpoint.Family, address: IPAddressBytes)] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [(Endpoint.Family, IPAddressBytes)] = []
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            let name = String(cString: ifa.pointee.ifa_name)
            guard name != tunName, ifa.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0,
                  ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0, let sa = ifa.pointee.ifa_addr else { continue }
            if sa.pointee.sa_family == sa_family_t(AF_INET) {
                let sin = UnsafeRawPointer(sa).assumingMemoryBound(to: sockaddr_in.self).pointee
                var a = IPAddressBytes()
                a.hi = UInt64(UInt32(bigEndian: sin.sin_addr.s_addr)) << 32
                out.append((.v4, a))
            } else if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                let sin6 = UnsafeRawPointer(sa).assumingMemoryBound(to: sockaddr_in6.self).pointee
                let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { continue }  // link-local: needs a scope, not a candidate
                out.append((.v6, IPAddressBytes(bytes: bytes)))
            }
        }
        return out
    }
}
