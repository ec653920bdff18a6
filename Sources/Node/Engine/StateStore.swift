// The node's state directory (`node.state_dir`): the cache of last-known
// endpoints that recovery falls back on after the anchors (seed 3.1, 3.5),
// `endpoints.json`, and the gossip records (ours with its sequence, which must
// never go backwards, and the members'), `records.bin`. One StateStore and one
// StateWriter per file. Written atomically — a temporary file in the same
// directory, fsync, rename, fsync of the directory — so a crash leaves either
// the old file or the new one, never half of one.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Foundation
import Logging
import Reactor

/// One file of the state directory. `save` is synchronous: it runs on the
/// writer's thread (`StateWriter`), never on a reactor.
struct StateStore: Sendable {
    let directory: String
    let name: String
    let logger: Logger
    var path: String { directory + "/" + name }
    /// The endpoint cache (NodeCore's `endpointCacheBytes`).
    static let endpointsFile = "endpoints.json"
    /// The gossip snapshot (NodeCore's `gossipSnapshot`): binary, self-delimiting signed records.
    static let recordsFile = "records.bin"

    /// A cache larger than this is not ours (a few hundred members' endpoints are a few KiB): refused unread.
    static let maxFileSize = 1 << 20

    init?(directory: String, name: String = StateStore.endpointsFile, logger: Logger) {
        self.directory = directory
        self.name = name
        self.logger = logger
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            logger.warning("state: cannot create \(directory): \(error); \(name) will not survive a restart")
            return nil
        }
        // A directory someone else made may be wider: the cache says where members are.
        _ = chmod(directory, 0o700)
        // A temporary file left by a crash between create and rename is garbage.
        _ = unlink(path + ".tmp")
    }

    /// The file's bytes, or nil (missing, too large, a symlink, unreadable).
    func load() -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= Self.maxFileSize else {
            logger.notice("state: \(path) is not a regular file of at most \(Self.maxFileSize) bytes; ignored")
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        return Array(bytes[..<got])
    }

    /// Atomically replaces the file: a new temporary file (never following a
    /// symlink, mode 0600), every byte written, fsync, rename, fsync of the
    /// directory. A crash at any point leaves the old file or the new one.
    @discardableResult
    func save(_ bytes: [UInt8]) -> Bool {
        let tmp = path + ".tmp"
        _ = unlink(tmp)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            logger.warning("state: cannot write \(tmp): \(String(cString: strerror(errno)))")
            return false
        }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        let ok = done == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            logger.warning("state: cannot replace \(path): \(String(cString: strerror(errno)))")
            unlink(tmp)
            return false
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
        return true
    }
}

/// When lane 0 hands a state file's bytes (the endpoint cache, the gossip
/// records) to its writer: at once after a quiet spell, else at most once per
/// `interval` (a path that flaps A, B, A, B — or an on-path attacker racing a
/// member's packets — costs one write per interval, not one per flip).
/// Pure: `now` is a parameter.
struct SaveSchedule: Sendable {
    enum Decision: Equatable { case writeNow, writeAt(Instant), alreadyScheduled }
    let interval: Span
    private(set) var lastWrite: Instant?
    private(set) var scheduled: Instant?

    init(interval: Span) { self.interval = interval }

    /// The cache changed at `now`.
    mutating func changed(now: Instant) -> Decision {
        if scheduled != nil { return .alreadyScheduled }
        if let last = lastWrite, now < last + interval {
            scheduled = last + interval
            return .writeAt(last + interval)
        }
        lastWrite = now
        return .writeNow
    }

    /// The scheduled write was handed over at `now`.
    mutating func fired(now: Instant) {
        scheduled = nil
        lastWrite = now
    }

    /// How often the cache is written at most while it keeps changing.
    static let defaultInterval = Span.seconds(30 as UInt64)
}

/// The state file's writer thread: lane 0 hands it the newest bytes and goes on;
/// the disk I/O (write, fsync, rename, fsync) happens here, never on a reactor.
/// Only the newest bytes are written: a newer snapshot replaces one not yet written.
final class StateWriter: @unchecked Sendable {
    private let store: StateStore
    private let lock = NSCondition()
    private var pending: [UInt8]?
    private var stopping = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    /// Files written (for tests and status).
    private(set) var writes = 0

    init(store: StateStore) {
        self.store = store
        let t = Thread { [unowned self] in self.loop() }
        t.name = "wsstate"
        thread = t
        t.start()
    }

    /// Hands `bytes` to the writer; returns at once.
    func submit(_ bytes: [UInt8]) {
        lock.lock()
        pending = bytes
        lock.signal()
        lock.unlock()
    }

    /// Writes what is pending, then ends the thread (at shutdown: after the reactors stopped).
    func finish() {
        lock.lock()
        stopping = true
        lock.signal()
        lock.unlock()
        done.wait()
    }

    private func loop() {
        setThreadName("wsstate")
        while true {
            lock.lock()
            while pending == nil && !stopping { lock.wait() }
            let bytes = pending
            pending = nil
            let stop = stopping
            lock.unlock()
            if let bytes, store.save(bytes) {
                lock.lock()
                writes += 1
                lock.unlock()
            }
            if stop {
                lock.lock()
                let more = pending
                pending = nil
                lock.unlock()
                if let more { store.save(more) }
                break
            }
        }
        done.signal()
    }
}

/// The host's own interface addresses (candidates of kind `local`), skipping
/// loopback, link-local IPv6, our own TUN interface, and private addresses on
/// point-to-point interfaces (`reachesOnlyItsTunnel`).
enum LocalAddresses {
    /// Whether an address on an interface with `flags` can be reached only
    /// through that interface's own tunnel: a private, link-local, ULA or
    /// shared (100.64/10) address on a point-to-point interface (another VPN's
    /// TUN, kernel WireGuard, a ppp link). There is no LAN behind such an
    /// interface, so the address is no candidate and no LAN announcement: a
    /// path to it would carry Whalescale inside the other tunnel. A public
    /// address on a point-to-point link (ppp with a public IP) stays one.
    static func reachesOnlyItsTunnel(flags: UInt32, family: Endpoint.Family, address: IPAddressBytes) -> Bool {
        guard flags & UInt32(IFF_POINTOPOINT) != 0 else { return false }
        let e = Endpoint(family: family, address: address, port: 0)
        return e.isPrivate || e.isShared
    }

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
                if reachesOnlyItsTunnel(flags: ifa.pointee.ifa_flags, family: .v4, address: a) { continue }
                out.append((.v4, a))
            } else if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                let sin6 = UnsafeRawPointer(sa).assumingMemoryBound(to: sockaddr_in6.self).pointee
                let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { continue }  // link-local: needs a scope, not a candidate
                let a = IPAddressBytes(bytes: bytes)
                if reachesOnlyItsTunnel(flags: ifa.pointee.ifa_flags, family: .v6, address: a) { continue }
                out.append((.v6, a))
            }
        }
        return out
    }

    /// IPv6 addresses of the up, non-loopback interfaces other than `tunName`, link-local
    /// included (not on a point-to-point interface: `reachesOnlyItsTunnel`), each with its
    /// interface's index (LAN discovery joins ff02::fb by index).
    static func listV6(excluding tunName: String) -> [(address: IPAddressBytes, index: UInt32)] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [(IPAddressBytes, UInt32)] = []
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            let name = String(cString: ifa.pointee.ifa_name)
            guard name != tunName, ifa.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0,
                  ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0, let sa = ifa.pointee.ifa_addr,
                  sa.pointee.sa_family == sa_family_t(AF_INET6) else { continue }
            let index = if_nametoindex(ifa.pointee.ifa_name)
            guard index != 0 else { continue }
            let sin6 = UnsafeRawPointer(sa).assumingMemoryBound(to: sockaddr_in6.self).pointee
            let a = IPAddressBytes(bytes: withUnsafeBytes(of: sin6.sin6_addr) { Array($0) })
            if reachesOnlyItsTunnel(flags: ifa.pointee.ifa_flags, family: .v6, address: a) { continue }
            out.append((a, index))
        }
        return out
    }
}
