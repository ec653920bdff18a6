// WireGuard's cross-platform userspace API (https://www.wireguard.com/xplatform/),
// as the drop-in mode (`whalescaled --wireguard IFNAME`) serves it on
// /var/run/wireguard/IFNAME.sock for `wg`, `wg-quick` and anything else that
// configures wireguard-go. Sans-IO: bytes in, a request out; a request and the
// current device in, a new device or an errno out; the device and its live
// numbers in, the `get` answer out. The socket is the engine's
// (Engine/WireGuardDropIn.swift).
//
// The protocol, one request per connection here (what `wg` sends):
//
//   get=1\n\n                    → key=value lines, then errno=0\n\n
//   set=1\n key=value\n ... \n   → errno=N\n\n  (0: applied)
//
// Device keys come first (private_key, listen_port, fwmark, replace_peers);
// `public_key=` starts a peer, and the keys after it (remove, update_only,
// preshared_key, endpoint, persistent_keepalive_interval, replace_allowed_ips,
// allowed_ip, protocol_version) apply to that peer. Keys are 64 hex digits;
// an all-zero private or preshared key clears it.
//
// Differences from wireguard-go, on purpose:
// - a `set` is atomic: it is applied to a copy, and any bad line refuses the
//   whole request (errno, nothing changed); wireguard-go keeps what it applied
//   before the bad line.
// - a request longer than `maxRequestBytes` is refused with EMSGSIZE.
// - endpoints are numeric ("192.0.2.1:51820", "[2001:db8::1]:51820"), as `wg`
//   sends them (it resolves names itself); an IPv6 zone ("%eth0") is refused.
import Support
import Wire
import Crypto

/// A drop-in WireGuard device's configuration: what `wg showconf` prints.
public struct WireGuardDevice: Sendable, Equatable {
    /// 32 bytes (an X25519 private key); nil: none set yet.
    public var privateKey: [UInt8]?
    /// 0: not set (the socket gets a free port).
    public var listenPort: UInt16 = 0
    /// SO_MARK on the UDP socket (0: none).
    public var fwmark: UInt32 = 0
    /// In the order they were added (what `get` lists).
    public var peers: [Peer] = []

    public struct Peer: Sendable, Equatable {
        public var publicKey: [UInt8]
        public var presharedKey: [UInt8]?
        public var endpoint: Endpoint?
        /// Seconds; 0: off.
        public var persistentKeepalive: UInt16 = 0
        /// Network prefixes (host bits cleared), in the order they were added.
        public var allowedIPs: [CIDR] = []

        public init(publicKey: [UInt8]) { self.publicKey = publicKey }
    }

    public init() {}

    /// The X25519 public key of `privateKey`.
    public var publicKey: [UInt8]? { privateKey.flatMap { Identity.wireGuardPublicKey(privateKey: $0) } }

    public func peerIndex(_ key: [UInt8]) -> Int? { peers.firstIndex { $0.publicKey == key } }
}

/// Live numbers of one peer for `get` (the session layer's).
public struct WireGuardPeerLive: Sendable, Equatable {
    public var endpoint: Endpoint?
    /// Wall-clock time of the last completed handshake (Unix seconds and nanoseconds); nil: none.
    public var lastHandshake: (seconds: UInt64, nanoseconds: UInt32)?
    public var rxBytes: UInt64 = 0
    public var txBytes: UInt64 = 0

    public init(endpoint: Endpoint? = nil, lastHandshake: (seconds: UInt64, nanoseconds: UInt32)? = nil,
                rxBytes: UInt64 = 0, txBytes: UInt64 = 0) {
        self.endpoint = endpoint
        self.lastHandshake = lastHandshake
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.endpoint == b.endpoint && a.lastHandshake?.seconds == b.lastHandshake?.seconds
            && a.lastHandshake?.nanoseconds == b.lastHandshake?.nanoseconds && a.rxBytes == b.rxBytes && a.txBytes == b.txBytes
    }
}

/// The errno values the UAPI answers with (Linux numbers, as `wg` prints them).
public enum UAPIErrno: Int, Sendable, Equatable {
    /// A malformed line (no '='), like wireguard-go's "protocol" errors.
    case protocolError = 71  // EPROTO
    /// An unknown key, a bad value, an unknown operation.
    case invalid = 22  // EINVAL
    /// The request is longer than `WireGuardUAPI.maxRequestBytes`.
    case tooLong = 90  // EMSGSIZE
    /// The listen port could not be bound.
    case addressInUse = 98  // EADDRINUSE
    /// The kernel refused the fwmark (SO_MARK needs CAP_NET_ADMIN).
    case notPermitted = 1  // EPERM
}

/// A `set` refused: the errno and a sentence for the log.
public struct UAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var errno: UAPIErrno
    public var message: String
    public init(_ errno: UAPIErrno, _ message: String) {
        self.errno = errno
        self.message = message
    }
    public var description: String { "\(message) (errno \(errno.rawValue))" }
}

public enum UAPIRequest: Sendable, Equatable {
    case get
    /// The key=value lines after `set=1`, in order (value nil: a line without '=').
    case set([(key: String, value: String?)])
    /// A request that is no operation we know (answered with EINVAL).
    case unknown(String)

    public static func == (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.get, .get): return true
        case (.unknown(let x), .unknown(let y)): return x == y
        case (.set(let x), .set(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }
}

/// Collects a connection's bytes until the empty line that ends a request.
public struct UAPIRequestReader: Sendable {
    private var buffer: [UInt8] = []
    public init() {}

    public enum Outcome: Sendable, Equatable {
        case needMore
        case request(UAPIRequest)
        case tooLong
        /// Not text (not UTF-8, or a NUL byte).
        case malformed
    }

    public mutating func append<C: Collection>(_ bytes: C) -> Outcome where C.Element == UInt8 {
        for b in bytes {
            buffer.append(b)
            if b == 0x0A, buffer.count >= 2, buffer[buffer.count - 2] == 0x0A {
                return WireGuardUAPI.parse(buffer)
            }
            // A lone "\n" at the very start is an empty request: wait for more.
            if buffer.count > WireGuardUAPI.maxRequestBytes { return .tooLong }
        }
        return .needMore
    }
}

public enum WireGuardUAPI {
    /// Enough for thousands of peers with several allowed IPs each (`wg setconf`
    /// sends a whole config in one request); more is refused, not buffered.
    public static let maxRequestBytes = 1 << 20

    /// A whole request, ending in "\n\n".
    static func parse(_ bytes: [UInt8]) -> UAPIRequestReader.Outcome {
        guard !bytes.contains(0), let text = String(validating: bytes, as: UTF8.self) else { return .malformed }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        guard let op = lines.first else { return .request(.unknown("")) }
        switch op {
        case "get=1":
            return .request(.get)
        case "set=1":
            var pairs: [(key: String, value: String?)] = []
            for line in lines.dropFirst() {
                guard let eq = line.firstIndex(of: "=") else {
                    pairs.append((key: line, value: nil))  // `apply` refuses it (EPROTO)
                    continue
                }
                pairs.append((key: String(line[..<eq]), value: String(line[line.index(after: eq)...])))
            }
            return .request(.set(pairs))
        default:
            return .request(.unknown(op))
        }
    }

    // MARK: set

    /// The device after a `set`'s lines, or why it is refused (then nothing changes).
    public static func apply(_ pairs: [(key: String, value: String?)], to device: WireGuardDevice) -> Result<WireGuardDevice, UAPIError> {
        var d = device
        /// The peer lines apply to: an index into d.peers, or nil while a removed,
        /// update-only or own-key peer's lines are skipped.
        var current: Int?
        var inPeer = false
        var created = false
        for (key, optionalValue) in pairs {
            guard let value = optionalValue else { return .failure(UAPIError(.protocolError, "line \(String(reflecting: key)) has no '='")) }
            if !inPeer {
                switch key {
                case "private_key":
                    guard let k = hexKey(value) else { return .failure(UAPIError(.invalid, "private_key: not 64 hex digits")) }
                    d.privateKey = k.allSatisfy { $0 == 0 } ? nil : k
                    continue
                case "listen_port":
                    guard let p = UInt16(value) else { return .failure(UAPIError(.invalid, "listen_port: \(String(reflecting: value)) is not a port")) }
                    d.listenPort = p
                    continue
                case "fwmark":
                    if value.isEmpty { d.fwmark = 0; continue }
                    guard let m = UInt32(value) else { return .failure(UAPIError(.invalid, "fwmark: \(String(reflecting: value)) is not a 32-bit number")) }
                    d.fwmark = m
                    continue
                case "replace_peers":
                    guard value == "true" else { return .failure(UAPIError(.invalid, "replace_peers: only \"true\" is allowed")) }
                    d.peers = []
                    continue
                case "public_key":
                    break
                default:
                    return .failure(UAPIError(.invalid, "unknown device key \(String(reflecting: key))"))
                }
            }
            if key == "public_key" {
                guard let k = hexKey(value) else { return .failure(UAPIError(.invalid, "public_key: not 64 hex digits")) }
                inPeer = true
                // A peer with the device's own key is skipped, as wireguard-go does.
                if let own = d.publicKey, own == k {
                    current = nil
                    created = false
                    continue
                }
                if let i = d.peerIndex(k) {
                    current = i
                    created = false
                } else {
                    d.peers.append(WireGuardDevice.Peer(publicKey: k))
                    current = d.peers.count - 1
                    created = true
                }
                continue
            }
            // A peer key whose peer is skipped: still checked, so a bad value is refused either way.
            switch key {
            case "remove":
                guard value == "true" else { return .failure(UAPIError(.invalid, "remove: only \"true\" is allowed")) }
                if let i = current { d.peers.remove(at: i) }
                current = nil
            case "update_only":
                guard value == "true" else { return .failure(UAPIError(.invalid, "update_only: only \"true\" is allowed")) }
                if let i = current, created {
                    d.peers.remove(at: i)
                    current = nil
                }
            case "preshared_key":
                guard let k = hexKey(value) else { return .failure(UAPIError(.invalid, "preshared_key: not 64 hex digits")) }
                if let i = current { d.peers[i].presharedKey = k.allSatisfy { $0 == 0 } ? nil : k }
            case "endpoint":
                guard let e = Endpoint(value) else {
                    return .failure(UAPIError(.invalid, "endpoint: \(String(reflecting: value)) is not IPv4:port or [IPv6]:port"))
                }
                if let i = current { d.peers[i].endpoint = e }
            case "persistent_keepalive_interval":
                guard let s = UInt16(value) else {
                    return .failure(UAPIError(.invalid, "persistent_keepalive_interval: \(String(reflecting: value)) is not 0...65535"))
                }
                if let i = current { d.peers[i].persistentKeepalive = s }
            case "replace_allowed_ips":
                guard value == "true" else { return .failure(UAPIError(.invalid, "replace_allowed_ips: only \"true\" is allowed")) }
                if let i = current { d.peers[i].allowedIPs = [] }
            case "allowed_ip":
                guard let c = CIDR(value) else { return .failure(UAPIError(.invalid, "allowed_ip: \(String(reflecting: value)) is not a prefix")) }
                guard let i = current else { continue }
                let net = c.network
                // Cryptokey routing: one owner per prefix; adding it here takes it from any other peer.
                for j in d.peers.indices where j != i { d.peers[j].allowedIPs.removeAll { $0 == net } }
                if !d.peers[i].allowedIPs.contains(net) { d.peers[i].allowedIPs.append(net) }
            case "protocol_version":
                guard value == "1" else { return .failure(UAPIError(.invalid, "protocol_version: only 1 is known")) }
            default:
                return .failure(UAPIError(.invalid, "unknown peer key \(String(reflecting: key))"))
            }
        }
        // A new private key whose public key is a peer's: that peer goes (as in wireguard-go).
        if let own = d.publicKey { d.peers.removeAll { $0.publicKey == own } }
        return .success(d)
    }

    // MARK: get

    /// The `get` answer: the device, each peer with its live numbers, then `errno=0`.
    /// `listenPort` is the port the socket is bound to (nil: none open).
    public static func render(_ d: WireGuardDevice, listenPort: UInt16?, live: [[UInt8]: WireGuardPeerLive]) -> String {
        var out = ""
        func line(_ k: String, _ v: String) {
            out += k
            out += "="
            out += v
            out += "\n"
        }
        if let k = d.privateKey { line("private_key", hex(k)) }
        if let p = listenPort ?? (d.listenPort != 0 ? d.listenPort : nil), p != 0 { line("listen_port", String(p)) }
        if d.fwmark != 0 { line("fwmark", String(d.fwmark)) }
        for p in d.peers {
            let l = live[p.publicKey] ?? WireGuardPeerLive()
            line("public_key", hex(p.publicKey))
            line("preshared_key", hex(p.presharedKey ?? [UInt8](repeating: 0, count: 32)))
            line("protocol_version", "1")
            if let e = l.endpoint ?? p.endpoint { line("endpoint", e.description) }
            line("last_handshake_time_sec", String(l.lastHandshake?.seconds ?? 0))
            line("last_handshake_time_nsec", String(l.lastHandshake?.nanoseconds ?? 0))
            line("tx_bytes", String(l.txBytes))
            line("rx_bytes", String(l.rxBytes))
            line("persistent_keepalive_interval", String(p.persistentKeepalive))
            for c in p.allowedIPs { line("allowed_ip", c.description) }
        }
        out += "errno=0\n\n"
        return out
    }

    /// The answer to a `set` (or a refused request).
    public static func errnoAnswer(_ e: UAPIErrno?) -> String { "errno=\(e?.rawValue ?? 0)\n\n" }

    // MARK: hex

    /// 64 hex digits (either case) as 32 bytes.
    public static func hexKey(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count == 64 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let h = nibble(u[2 * i]), let l = nibble(u[2 * i + 1]) else { return nil }
            out[i] = h << 4 | l
        }
        return out
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var u: [UInt8] = []
        u.reserveCapacity(bytes.count * 2)
        for b in bytes {
            u.append(digits[Int(b >> 4)])
            u.append(digits[Int(b & 15)])
        }
        return String(decoding: u, as: UTF8.self)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
}
