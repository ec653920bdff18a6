// PCP (Port Control Protocol, RFC 6887): the MAP opcode, the one request
// Whalescale makes of its gateway ("let UDP to external:port reach my
// listening port"). Spoken over UDP to the default gateway's port 5351 (the
// port NAT-PMP uses too: a NAT-PMP-only gateway answers version 2 with
// UNSUPP_VERSION). Addresses are 16 bytes; IPv4 is carried IPv4-mapped
// (::ffff:a.b.c.d). Every number is big-endian.
//
// Request, 60 bytes (§7.1 common header + §11.1 MAP payload, no options):
//   0 version = 2 | 1 R = 0, opcode = 1 (MAP) | 2..4 reserved (0)
//   4..8   requested lifetime, seconds (0 = delete the mapping)
//   8..24  PCP client's IP address (the source address of this datagram)
//  24..36  mapping nonce (96 bits, random per mapping, repeated in renewals)
//  36 protocol (17 = UDP) | 37..40 reserved (0)
//  40..42  internal port (our listening port)
//  42..44  suggested external port (0 = no preference)
//  44..60  suggested external IP address (all zeros: no preference)
//
// Response (§7.2 header + §11.1 payload), 60 bytes, optionally followed by
// options (4-byte aligned, at most 1100 bytes in all; skipped unread):
//   0 version = 2 | 1 R = 1, opcode = 1 | 2 reserved | 3 result code
//   4..8   lifetime, seconds (on success: granted; on error: how long the error holds)
//   8..12  epoch time, seconds since the server's state began (§8.5: a jump
//          backwards means the gateway restarted and forgot our mapping)
//  12..24  reserved
//  24..36  mapping nonce (must match ours) | 36 protocol | 37..40 reserved
//  40..42  internal port | 42..44 assigned external port
//  44..60  assigned external IP address
// A gateway that rejects the version or the opcode may answer with the 24-byte
// header alone (§8.3, UNSUPP_VERSION / UNSUPP_OPCODE): `PCPResponse.parse`
// accepts that short form for error results only.

import Support

public enum PCP {
    /// The server's UDP port (§19.1).
    public static let serverPort: UInt16 = 5351
    public static let version: UInt8 = 2
    public static let opcodeMap: UInt8 = 1
    public static let responseBit: UInt8 = 0x80
    public static let protocolUDP: UInt8 = 17
    /// Common header, request and response.
    public static let headerSize = 24
    /// MAP payload.
    public static let mapPayloadSize = 36
    /// A MAP request or response without options.
    public static let mapSize = headerSize + mapPayloadSize
    /// §7: "a PCP message ... MUST NOT exceed 1100 octets".
    public static let maxMessageSize = 1100

    /// Result codes (§7.4).
    public enum Result: UInt8, Sendable, CustomStringConvertible {
        case success = 0
        case unsuppVersion = 1
        case notAuthorized = 2
        case malformedRequest = 3
        case unsuppOpcode = 4
        case unsuppOption = 5
        case malformedOption = 6
        case networkFailure = 7
        case noResources = 8
        case unsuppProtocol = 9
        case userExQuota = 10
        case cannotProvideExternal = 11
        case addressMismatch = 12
        case excessiveRemotePeers = 13

        public var description: String {
            switch self {
            case .success: "SUCCESS"
            case .unsuppVersion: "UNSUPP_VERSION"
            case .notAuthorized: "NOT_AUTHORIZED"
            case .malformedRequest: "MALFORMED_REQUEST"
            case .unsuppOpcode: "UNSUPP_OPCODE"
            case .unsuppOption: "UNSUPP_OPTION"
            case .malformedOption: "MALFORMED_OPTION"
            case .networkFailure: "NETWORK_FAILURE"
            case .noResources: "NO_RESOURCES"
            case .unsuppProtocol: "UNSUPP_PROTOCOL"
            case .userExQuota: "USER_EX_QUOTA"
            case .cannotProvideExternal: "CANNOT_PROVIDE_EXTERNAL"
            case .addressMismatch: "ADDRESS_MISMATCH"
            case .excessiveRemotePeers: "EXCESSIVE_REMOTE_PEERS"
            }
        }

        /// §7.4: "long lifetime" errors will not go away by retrying soon.
        public var isLongLived: Bool {
            switch self {
            case .unsuppVersion, .notAuthorized, .malformedRequest, .unsuppOpcode, .unsuppOption,
                 .malformedOption, .unsuppProtocol, .addressMismatch:
                true
            default: false
            }
        }
    }

    /// 16 bytes of an address as PCP carries it: IPv4 IPv4-mapped.
    public static func addressBytes(_ e: Endpoint) -> [UInt8] {
        if e.family == .v6 { return e.address.bytes }
        return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + e.address.bytes[0..<4]
    }

    /// An endpoint from 16 address bytes and a port: IPv4-mapped becomes IPv4.
    public static func endpoint(_ b: ArraySlice<UInt8>, port: UInt16) -> Endpoint {
        let a = Array(b)
        precondition(a.count == 16)
        if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xff && a[11] == 0xff {
            return Endpoint.v4(a[12], a[13], a[14], a[15], port: port)
        }
        return Endpoint(family: .v6, address: IPAddressBytes(bytes: a), port: port)
    }
}

/// A MAP request (delete: lifetime 0).
public struct PCPMapRequest: Equatable, Sendable {
    public var lifetime: UInt32
    /// Our address as the gateway sees the datagram's source (port ignored).
    public var client: Endpoint
    public var nonce: [UInt8]
    public var internalPort: UInt16
    /// Suggested external address and port. No preference: port 0 and the
    /// family's all-zeros address (§5: ::ffff:0.0.0.0 for IPv4, which also tells
    /// the gateway we want an IPv4 mapping).
    public var suggestedExternal: Endpoint

    public init(lifetime: UInt32, client: Endpoint, nonce: [UInt8], internalPort: UInt16, suggestedExternal: Endpoint? = nil) {
        precondition(nonce.count == 12, "a PCP mapping nonce is 96 bits")
        self.lifetime = lifetime
        self.client = client
        self.nonce = nonce
        self.internalPort = internalPort
        self.suggestedExternal = suggestedExternal ?? Endpoint(family: client.family, address: IPAddressBytes(), port: 0)
    }

    public func serialize() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: PCP.mapSize)
        b[0] = PCP.version
        b[1] = PCP.opcodeMap
        put32(&b, 4, lifetime)
        b.replaceSubrange(8..<24, with: PCP.addressBytes(client))
        b.replaceSubrange(24..<36, with: nonce)
        b[36] = PCP.protocolUDP
        put16(&b, 40, internalPort)
        put16(&b, 42, suggestedExternal.port)
        b.replaceSubrange(44..<60, with: PCP.addressBytes(suggestedExternal))
        return b
    }

    /// A request as a server sees it (tests and the fake gateway); nil unless exactly a MAP request without options.
    public static func parse(_ b: [UInt8]) -> PCPMapRequest? {
        guard b.count == PCP.mapSize, b[0] == PCP.version, b[1] == PCP.opcodeMap, b[36] == PCP.protocolUDP else { return nil }
        return PCPMapRequest(lifetime: get32(b, 4), client: PCP.endpoint(b[8..<24], port: 0), nonce: Array(b[24..<36]),
                             internalPort: get16(b, 40), suggestedExternal: PCP.endpoint(b[44..<60], port: get16(b, 42)))
    }
}

/// A MAP response (or an error answer with the header only).
public struct PCPMapResponse: Equatable, Sendable {
    /// The raw result code (`PCP.Result(rawValue:)` is nil for codes RFC 6887 does not name).
    public var resultCode: UInt8
    public var lifetime: UInt32
    public var epoch: UInt32
    /// The MAP payload; nil in a header-only error answer.
    public var nonce: [UInt8]?
    public var protocolNumber: UInt8
    public var internalPort: UInt16
    public var external: Endpoint?

    public init(resultCode: UInt8, lifetime: UInt32, epoch: UInt32, nonce: [UInt8]?, protocolNumber: UInt8 = PCP.protocolUDP,
                internalPort: UInt16 = 0, external: Endpoint? = nil) {
        self.resultCode = resultCode
        self.lifetime = lifetime
        self.epoch = epoch
        self.nonce = nonce
        self.protocolNumber = protocolNumber
        self.internalPort = internalPort
        self.external = external
    }

    public var result: PCP.Result? { PCP.Result(rawValue: resultCode) }

    /// Why bytes from the gateway are not a MAP response (counted by the client).
    public enum ParseError: Error, Equatable, Sendable {
        case size, version, notResponse, opcode
    }

    /// Checks the length before every read: 24 (error header only) or 60 plus
    /// 4-byte-aligned options, never more than 1100.
    public static func parse(_ b: [UInt8]) -> Result<PCPMapResponse, ParseError> {
        guard b.count >= PCP.headerSize, b.count <= PCP.maxMessageSize, b.count % 4 == 0 else { return .failure(.size) }
        guard b[0] == PCP.version else { return .failure(.version) }
        guard b[1] & PCP.responseBit != 0 else { return .failure(.notResponse) }
        guard b[1] & ~PCP.responseBit == PCP.opcodeMap else { return .failure(.opcode) }
        let code = b[3], lifetime = get32(b, 4), epoch = get32(b, 8)
        if b.count < PCP.mapSize {
            // Only an error may come without the payload.
            guard b.count == PCP.headerSize, code != PCP.Result.success.rawValue else { return .failure(.size) }
            return .success(PCPMapResponse(resultCode: code, lifetime: lifetime, epoch: epoch, nonce: nil))
        }
        return .success(PCPMapResponse(
            resultCode: code, lifetime: lifetime, epoch: epoch, nonce: Array(b[24..<36]), protocolNumber: b[36],
            internalPort: get16(b, 40), external: PCP.endpoint(b[44..<60], port: get16(b, 42))))
    }

    /// As a server sends it (tests and the fake gateway): 60 bytes, or 24 without a payload.
    public func serialize() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: nonce == nil ? PCP.headerSize : PCP.mapSize)
        b[0] = PCP.version
        b[1] = PCP.responseBit | PCP.opcodeMap
        b[3] = resultCode
        put32(&b, 4, lifetime)
        put32(&b, 8, epoch)
        guard let nonce else { return b }
        b.replaceSubrange(24..<36, with: nonce)
        b[36] = protocolNumber
        put16(&b, 40, internalPort)
        if let e = external {
            put16(&b, 42, e.port)
            b.replaceSubrange(44..<60, with: PCP.addressBytes(e))
        }
        return b
    }
}

private func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) {
    b[at] = UInt8(v >> 8)
    b[at + 1] = UInt8(v & 0xff)
}

private func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) {
    for i in 0..<4 { b[at + i] = UInt8((v >> (24 - 8 * UInt32(i))) & 0xff) }
}

private func get16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) << 8 | UInt16(b[at + 1]) }

private func get32(_ b: [UInt8], _ at: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(b[at + $1]) }
}
