// Text and JSON inputs (review C.2 rows 17-19): the endpoint cache file, the
// control socket's request lines (daemon side) and response lines (wsctl side),
// and the TOML configuration.
import Foundation
import Support
import Wire
import Crypto
import Protocol
import Config
import Control

let textTargets: [FuzzTarget] = [
    FuzzTarget(name: "endpoint-cache", summary: "EndpointCache(bytes:), NodeCore.loadEndpointCache, Endpoint(text)") { input in
        if let cache = EndpointCache(bytes: input) {
            check(cache.entries.count <= EndpointCache.maxMembers, "cache members over the limit")
            check(cache.entries.values.allSatisfy { $0.count <= EndpointCache.maxPerMember && !$0.isEmpty }, "cache endpoints over the limit")
            check(EndpointCache(bytes: cache.bytes) == cache, "cache round trip")
            var node = cacheNode
            check(node.loadEndpointCache(input), "NodeCore refused a cache EndpointCache accepts")
        }
        // Short inputs are also tried as endpoint text.
        if input.count <= 64, let text = String(validating: input, as: UTF8.self), let ep = Endpoint(text) {
            check(Endpoint(ep.description) == ep, "endpoint text round trip: \(text)")
        }
    } seeds: {
        var c = EndpointCache()
        _ = c.record(sampleEndpoints[0], for: cacheKeys[1].publicKey)
        _ = c.record(sampleEndpoints[1], for: cacheKeys[1].publicKey)
        _ = c.record(sampleEndpoints[3], for: cacheKeys[0].publicKey)
        return [c.bytes, Array("[2001:db8::1]:51820".utf8), Array("{\"version\":1,\"members\":[]}".utf8)]
    },

    FuzzTarget(name: "control-codec", summary: "ControlLineReader + ControlCodec.decodeRequest / decodeResponse") { input in
        // Byte 0: the chunk size the connection delivers the bytes in.
        var r = FuzzReader(input)
        let chunk = Int(r.u8()) + 1
        let stream = r.rest()
        var reader = ControlLineReader()
        var outcome = ControlLineReader.Outcome.needMore
        var i = 0
        while i < stream.count, outcome == .needMore {
            outcome = reader.append(stream[i..<min(i + chunk, stream.count)])
            i += chunk
        }
        if outcome == .needMore { outcome = reader.finish() }
        switch outcome {
        case .line(let line):
            check(line.count <= ControlCodec.maxRequestBytes + 1 && !line.contains(0x0A), "reader gave a bad line")
            let answer = ControlCodec.respond(to: line) { _ in .error("fuzz") }
            check(answer.last == 0x0A && answer.filter { $0 == 0x0A }.count == 1, "not one response line")
            _ = ControlCodec.decodeRequest(line)
        case .tooLong:
            check(stream.count > ControlCodec.maxRequestBytes, "tooLong for a short request")
        case .needMore:
            fatalError("oracle: reader still wants more after finish")
        }
        _ = try? ControlCodec.decodeResponse(stream)
    } seeds: {
        [[0xff] + ControlCodec.encode(.status), [3] + Array("{\"verb\":\"status\",\"x\":[[[1]]]}\r\n".utf8),
         [0] + ControlCodec.encode(.error("nope")), [7] + Array("{\"verb\":7}".utf8)]
    },

    FuzzTarget(name: "config", summary: "Config.parse (TOML text)") { input in
        guard input.count <= 16 * 1024 else { return }
        let text = String(decoding: input, as: UTF8.self)
        do throws(ConfigError) {
            _ = try Config.parse(text, path: "fuzz.toml")
        } catch {
            _ = error.description
        }
    } seeds: {
        [Array(sampleConfig.utf8), Array("[node]\nprivate_key = \"x\"\n".utf8)]
    },
]

/// Two fixed identities for the cache seeds and the node the cache is loaded into.
let cacheKeys = [Identity(secret: SecretKey(bytes: [UInt8](repeating: 3, count: 32))!),
                 Identity(secret: SecretKey(bytes: [UInt8](repeating: 4, count: 32))!)]
let cacheNode = NodeCore(
    identity: cacheKeys[0],
    members: cacheKeys.enumerated().map { MemberSpec(publicKey: $1.publicKey, name: "m\($0)") },
    isAnchor: false, seed: 1)

let sampleConfig = """
# a member
[node]
private_key_file = "/etc/whalescale/ws0.key"
interface = "ws1"
address = "10.77.0.2/24"
listen_port = 41641
anchor = false

[[peer]]
name = "anchor-1"
public_key = "\(cacheKeys[1].publicKey.base64)"
address = "10.77.0.10/32"
endpoint = "203.0.113.10:51820"
anchor = true
persistent_keepalive = 25

[[peer]]
name = "b"
public_key = "\(cacheKeys[0].publicKey.base64)"
address = "fd77::3/128"
"""
