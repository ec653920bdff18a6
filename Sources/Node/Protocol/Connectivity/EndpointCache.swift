// The cache of last-known member endpoints, for recovery after a restart or
// after losing every path (DESIGN §5 "cached endpoints (persisted in a state
// dir)"). NodeCore produces and reads the bytes; the engine owns the file:
// it reads it at start (`NodeCore.loadEndpointCache`) and, on
// `NodeEvent.endpointCacheChanged`, writes `endpointCacheBytes()` atomically
// (write a temporary file, fsync, rename) into state_dir.
//
// Format: UTF-8 JSON, stable and small, readable by an operator:
//
//   {
//     "version": 1,
//     "members": [
//       { "public_key": "base64", "endpoints": ["198.51.100.7:40001", "[2001:db8::7]:51820"] }
//     ]
//   }
//
// Endpoints per member are most recent first, at most `maxPerMember`; only
// direct endpoints that authenticated are cached (a relay is not an endpoint
// of the member). Unknown keys are ignored; a member not in the config, a
// malformed key or endpoint is skipped, so an old cache never stops a start.
import Support
import Wire
import Crypto
import Foundation

public struct EndpointCache: Equatable, Sendable {
    public static let version = 1
    public static let maxPerMember = 4
    /// Bound on what a (corrupted or hostile) file can make us hold.
    public static let maxMembers = 4096

    /// Member key -> endpoints, most recent first.
    public private(set) var entries: [PublicKey: [Endpoint]] = [:]

    public init() {}

    /// Records that `endpoint` worked for `key` (moves it to the front).
    /// Returns whether the cache changed.
    @discardableResult
    public mutating func record(_ endpoint: Endpoint, for key: PublicKey) -> Bool {
        var list = entries[key] ?? []
        if list.first == endpoint { return false }
        list.removeAll { $0 == endpoint }
        list.insert(endpoint, at: 0)
        if list.count > Self.maxPerMember { list.removeLast(list.count - Self.maxPerMember) }
        entries[key] = list
        return true
    }

    public func endpoints(for key: PublicKey) -> [Endpoint] { entries[key] ?? [] }

    private struct File: Codable {
        var version: Int
        var members: [Member]
        struct Member: Codable {
            var publicKey: String
            var endpoints: [String]
            enum CodingKeys: String, CodingKey {
                case publicKey = "public_key"
                case endpoints
            }
        }
    }

    /// The JSON bytes (members sorted by key, so equal caches give equal bytes).
    public var bytes: [UInt8] {
        let members = entries.map { File.Member(publicKey: $0.key.base64, endpoints: $0.value.map(\.description)) }
            .sorted { $0.publicKey < $1.publicKey }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return (try? encoder.encode(File(version: Self.version, members: members))).map { Array($0) } ?? []
    }

    /// Parses cache bytes. Nil when the bytes are not a cache of a known
    /// version; bad entries inside a good file are skipped.
    public init?(bytes: [UInt8]) {
        guard let file = try? JSONDecoder().decode(File.self, from: Data(bytes)), file.version == Self.version else { return nil }
        for m in file.members.prefix(Self.maxMembers) {
            guard let key = PublicKey(base64: m.publicKey) else { continue }
            let eps = m.endpoints.prefix(Self.maxPerMember).compactMap { Endpoint($0) }
            if !eps.isEmpty { entries[key] = Array(eps) }
        }
    }
}
