import Foundation
import XCTest

@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

private let nodeKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
private let keyA = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
private let keyB = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg="
private let keyC = "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8="

/// A node with an anchor reached directly, a laptop relayed through it and on
/// the LAN at once, and a phone that is idle.
private func sampleReport() -> StatusReport {
    StatusReport(
        node: .init(
            publicKey: nodeKey, interface: "ws0", address: "10.77.0.1/24", listenPort: 51820,
            endpoints: [
                .init(addr: "198.51.100.7:51820", source: .observed),
                .init(addr: "192.168.1.10:51820", source: .local),
            ],
            nat: .init(mapping: .endpointIndependent)),
        anchors: [
            .init(publicKey: keyA, name: "anchor-1", reachable: true),
            .init(publicKey: keyC, name: "anchor-2", reachable: false),
        ],
        peers: [
            .init(
                name: "anchor-1", publicKey: keyA, address: ["10.77.0.10/32"], state: .up,
                endpoint: "203.0.113.10:51820", lastHandshakeSecondsAgo: 12, rxBytes: 1_258_291, txBytes: 348_160,
                paths: [.init(kind: .direct, remote: "203.0.113.10:51820", rttMs: 23.5, loss: 0, active: true)]),
            .init(
                name: "laptop", publicKey: keyB, address: ["10.77.0.20/32", "192.168.50.0/24"], state: .up,
                endpoint: "192.168.1.20:51820", lastHandshakeSecondsAgo: 63, rxBytes: 90_112, txBytes: 512,
                paths: [
                    .init(kind: .relay, remote: "203.0.113.10:51820", via: "anchor-1", rttMs: 48, loss: 0.02, active: true),
                    .init(kind: .lan, remote: "192.168.1.20:51820", rttMs: 0.5, loss: 0, active: true),
                    .init(kind: .direct, remote: "198.51.100.20:40000", active: false),
                ],
                gossip: .init(sequence: 7, endpoints: [.init(addr: "198.51.100.20:40000", source: .observed)])),
            .init(name: "phone", publicKey: keyC, address: ["10.77.0.30/32"], state: .idle),
        ],
        warnings: ["anchor anchor-2 is unreachable: only one anchor is up"],
        counters: ["replay": 3, "not_a_member": 0, "bad_mac": 1])
}

final class ControlTests: XCTestCase {

    // MARK: StatusReport JSON

    func testRoundTrip() throws {
        let report = sampleReport()
        let line = ControlCodec.encode(ControlResponse.status(report))
        XCTAssertEqual(line.last, 0x0A)
        XCTAssertEqual(line.filter { $0 == 0x0A }.count, 1, "exactly one line")
        XCTAssertEqual(try ControlCodec.decodeResponse(line), .status(report))

        let error = ControlCodec.encode(ControlResponse.error("boom"))
        XCTAssertEqual(String(decoding: error, as: UTF8.self), "{\"error\":\"boom\",\"ok\":false}\n")
        XCTAssertEqual(try ControlCodec.decodeResponse(error), .error("boom"))
    }

    /// The documented schema (docs/status-json.md), pinned to the byte:
    /// sorted keys, snake_case, nulls present.
    func testExactJSON() {
        let report = StatusReport(
            node: .init(
                publicKey: nodeKey, interface: "ws0", address: "10.77.0.1/24", listenPort: 51820, anchor: true,
                endpoints: [.init(addr: "198.51.100.7:51820", source: .upnp)], nat: .init(mapping: .endpointDependent)),
            anchors: [.init(publicKey: keyA, name: "anchor-1", reachable: true)],
            peers: [
                .init(
                    name: "anchor-1", publicKey: keyA, address: ["10.77.0.10/32"], state: .handshaking,
                    rxBytes: 1, txBytes: 2,
                    paths: [.init(kind: .relay, remote: "203.0.113.10:51820", via: "anchor-2", rttMs: 12.5, loss: 0.25, active: false)]),
            ],
            warnings: ["w"],
            counters: ["replay": 7])
        let expected = #"""
            {"ok":true,"status":{"anchors":[{"name":"anchor-1","public_key":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","reachable":true}],"counters":{"replay":7},"node":{"address":"10.77.0.1/24","addresses":["10.77.0.1/24"],"anchor":true,"endpoints":[{"addr":"198.51.100.7:51820","source":"upnp"}],"interface":"ws0","listen_port":51820,"nat":{"evidence":[],"mapping":"endpoint-dependent"},"public_key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","reactors":1,"wireguard_public_key":""},"peers":[{"address":["10.77.0.10/32"],"by_path_kind":[],"checksum_offload":null,"cipher":null,"endpoint":null,"gossip":null,"handshakes_completed":0,"handshakes_failed":0,"kind":"whalescale","lan":null,"last_handshake_s_ago":null,"name":"anchor-1","next_direct_retry_s":null,"paths":[{"active":false,"kind":"relay","loss":0.25,"remote":"203.0.113.10:51820","rtt_ms":12.5,"sources":[],"usable":false,"via":"anchor-2"}],"persistent_keepalive_s":null,"public_key":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","punching":false,"reorder":null,"roam":null,"rx_bytes":1,"rx_packets":0,"state":"handshaking","tx_bytes":2,"tx_packets":0}],"version":1,"warnings":["w"]}}

            """#
        XCTAssertEqual(String(decoding: ControlCodec.encode(.status(report)), as: UTF8.self), expected)
    }

    /// A peer's gossip record in the JSON, and a peer from a daemon before gossip ran.
    func testPeerGossipRecord() throws {
        let record = StatusReport.GossipRecord(sequence: 12, endpoints: [.init(addr: "100.64.0.77:40001", source: .observed)])
        let peer = StatusReport.Peer(name: "m", publicKey: "k", address: [], state: .idle, gossip: record)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = try encoder.encode(peer)
        XCTAssertTrue(String(decoding: json, as: UTF8.self).contains(
            #""gossip":{"endpoints":[{"addr":"100.64.0.77:40001","source":"observed"}],"sequence":12}"#), String(decoding: json, as: UTF8.self))
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.Peer.self, from: json), peer)
        let old = #"{"address":[],"endpoint":null,"last_handshake_s_ago":null,"name":"m","paths":[],"public_key":"k","rx_bytes":0,"state":"idle","tx_bytes":0}"#
        XCTAssertNil(try JSONDecoder().decode(StatusReport.Peer.self, from: Data(old.utf8)).gossip)
    }

    /// A peer's LAN announcement in the JSON and the table, and a peer from a daemon before LAN discovery.
    func testPeerLanEndpoint() throws {
        let peer = StatusReport.Peer(name: "h2", publicKey: "k", address: [], state: .up,
                                     paths: [.init(kind: .lan, remote: "192.168.1.11:51820", active: true)],
                                     lan: .init(addr: "192.168.1.11:51820", source: .lan))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = try encoder.encode(peer)
        XCTAssertTrue(String(decoding: json, as: UTF8.self).contains(#""lan":{"addr":"192.168.1.11:51820","source":"lan"}"#),
                      String(decoding: json, as: UTF8.self))
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.Peer.self, from: json), peer)
        let old = #"{"address":[],"endpoint":null,"last_handshake_s_ago":null,"name":"m","paths":[],"public_key":"k","rx_bytes":0,"state":"idle","tx_bytes":0}"#
        XCTAssertNil(try JSONDecoder().decode(StatusReport.Peer.self, from: Data(old.utf8)).lan)
        let table = renderStatusTable(StatusReport(node: .init(publicKey: "k", interface: "ws0", address: "10.77.0.11/24", listenPort: 51820),
                                                   peers: [peer]))
        XCTAssertTrue(table.contains("on this lan: h2 192.168.1.11:51820"), table)
        XCTAssertTrue(table.contains("lan 192.168.1.11:51820"), table)
    }

    /// A reader of a daemon from before `addresses` and `reactors` existed.
    func testNodeFromAnEarlierDaemon() throws {
        let json = #"{"address":"10.77.0.1/24","anchor":false,"endpoints":[],"interface":"ws0","listen_port":51820,"nat":{"mapping":"unknown"},"public_key":"k"}"#
        let node = try JSONDecoder().decode(StatusReport.Node.self, from: Data(json.utf8))
        XCTAssertEqual(node.addresses, ["10.77.0.1/24"])
        XCTAssertEqual(node.reactors, 1)
    }

    /// Every object has exactly its documented keys, even when values are unknown.
    func testKeyNames() throws {
        var report = sampleReport()
        report.peers[2].paths = [.init(kind: .direct, remote: "192.0.2.1:1", active: false)]
        let data = Data(ControlCodec.prettyJSON(report).utf8)
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(Set(root.keys), ["version", "node", "anchors", "peers", "warnings", "counters"])
        let node = try XCTUnwrap(root["node"] as? [String: Any])
        XCTAssertEqual(Set(node.keys), ["public_key", "interface", "address", "addresses", "listen_port", "anchor", "reactors", "endpoints", "nat",
                                        "wireguard_public_key"])
        let endpoint = try XCTUnwrap((node["endpoints"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(endpoint.keys), ["addr", "source"])
        XCTAssertEqual(Set(try XCTUnwrap(node["nat"] as? [String: Any]).keys), ["mapping", "evidence"])
        let anchor = try XCTUnwrap((root["anchors"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(anchor.keys), ["public_key", "name", "reachable"])
        let peers = try XCTUnwrap(root["peers"] as? [[String: Any]])
        let peerKeys: Set = ["name", "public_key", "address", "state", "endpoint", "last_handshake_s_ago", "rx_bytes", "tx_bytes", "paths",
                             "gossip", "punching", "next_direct_retry_s", "rx_packets", "tx_packets",
                             "handshakes_completed", "handshakes_failed", "kind", "persistent_keepalive_s", "roam", "by_path_kind", "lan",
                             "cipher", "checksum_offload", "reorder"]
        for peer in peers { XCTAssertEqual(Set(peer.keys), peerKeys) }
        // The idle phone: unknowns are null, not missing.
        XCTAssertTrue(peers[2]["endpoint"] is NSNull)
        XCTAssertTrue(peers[2]["last_handshake_s_ago"] is NSNull)
        let path = try XCTUnwrap((peers[2]["paths"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(path.keys), ["kind", "remote", "via", "rtt_ms", "loss", "active", "usable", "sources"])
        XCTAssertTrue(path["via"] is NSNull)
        XCTAssertTrue(path["rtt_ms"] is NSNull)
    }

    func testEnumSpellings() {
        XCTAssertEqual(StatusReport.EndpointSource.allCases.map(\.rawValue), ["local", "observed", "upnp", "natpmp", "pcp", "lan"])
        XCTAssertEqual(NATMapping.allCases.map(\.rawValue), ["endpoint-independent", "endpoint-dependent", "none", "unknown"])
        XCTAssertEqual(PathKind.allCases.map(\.rawValue), ["direct", "lan", "relay"])
        XCTAssertEqual([StatusReport.PeerState.idle, .handshaking, .up].map(\.rawValue), ["idle", "handshaking", "up"])
    }

    /// JSON has no NaN: a broken estimate becomes null instead of failing the whole answer.
    func testNonFiniteNumbersBecomeNull() throws {
        var report = sampleReport()
        report.peers[0].paths[0].rttMs = .nan
        report.peers[0].paths[0].loss = .infinity
        let line = ControlCodec.encode(.status(report))
        let text = String(decoding: line, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("{\"ok\":true"), text)
        guard case .status(let back) = try ControlCodec.decodeResponse(line) else { return XCTFail(text) }
        XCTAssertNil(back.peers[0].paths[0].rttMs)
        XCTAssertNil(back.peers[0].paths[0].loss)
    }

    /// A newer daemon may report a state this wsctl does not know; it still decodes.
    func testUnknownPeerStateDecodes() throws {
        var report = sampleReport()
        report.peers[2].state = StatusReport.PeerState(rawValue: "recovering")
        guard case .status(let back) = try ControlCodec.decodeResponse(ControlCodec.encode(.status(report))) else { return XCTFail() }
        XCTAssertEqual(back.peers[2].state.rawValue, "recovering")
    }

    func testBadResponseIsAnError() {
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array("{\"ok\":true}\n".utf8)))
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array("garbage".utf8)))
    }

    // MARK: Requests

    func testRequestEncoding() {
        XCTAssertEqual(String(decoding: ControlCodec.encode(ControlRequest.status), as: UTF8.self), "{\"verb\":\"status\"}\n")
        XCTAssertEqual(ControlCodec.decodeRequest(ControlCodec.encode(ControlRequest.status)), .success(.status))
    }

    func testRequestVariantsAccepted() {
        for text in ["{\"verb\":\"status\"}", "{\"verb\":\"status\"}\r\n", "  { \"verb\" : \"status\" , \"future\": [1, {\"x\": 2}] }  "] {
            XCTAssertEqual(ControlCodec.decodeRequest(Array(text.utf8)), .success(.status), text)
        }
    }

    func testRequestErrors() {
        let table: [(String, ControlRequestError)] = [
            ("", .empty),
            ("\n", .empty),
            ("   \t", .empty),
            ("{\"verb\":", .notJSON),
            ("verb=status", .notJSON),
            ("[\"status\"]", .notAnObject),
            ("\"status\"", .notAnObject),
            ("42", .notAnObject),
            ("{}", .missingVerb),
            ("{\"verbs\":\"status\"}", .missingVerb),
            ("{\"verb\":1}", .verbNotAString),
            ("{\"verb\":null}", .verbNotAString),
            ("{\"verb\":[\"status\"]}", .verbNotAString),
            ("{\"verb\":\"STATUS\"}", .unknownVerb("STATUS")),
            ("{\"verb\":\"reboot\"}", .unknownVerb("reboot")),
            (String(repeating: "[", count: 33) + String(repeating: "]", count: 33), .nestedTooDeeply(limit: 32)),
        ]
        for (text, expected) in table {
            XCTAssertEqual(ControlCodec.decodeRequest(Array(text.utf8)), .failure(expected), text)
        }
        XCTAssertEqual(ControlCodec.decodeRequest([0x7B, 0xFF, 0xFE, 0x7D]), .failure(.notJSON), "invalid UTF-8")
        // A deep nest all the way to the limit is refused before the parser sees it.
        let deep = Array(String(repeating: "[", count: 60_000).utf8)
        XCTAssertEqual(ControlCodec.decodeRequest(deep), .failure(.nestedTooDeeply(limit: 32)))
    }

    func testRequestLengthLimit() {
        // A valid request padded with spaces to exactly the limit is accepted; one byte more is not.
        let base = "{\"verb\":\"status\"}"
        let atLimit = base + String(repeating: " ", count: ControlCodec.maxRequestBytes - base.utf8.count)
        XCTAssertEqual(ControlCodec.decodeRequest(Array((atLimit + "\n").utf8)), .success(.status))
        XCTAssertEqual(ControlCodec.decodeRequest(Array((atLimit + " ").utf8)), .failure(.tooLong(limit: 65536)))
    }

    func testErrorResponsesAreOneLine() {
        let line = ControlCodec.respond(to: Array("{\"verb\":\"reboot\"}\n".utf8)) { _ in XCTFail("handler called"); return .error("") }
        XCTAssertEqual(String(decoding: line, as: UTF8.self), "{\"error\":\"unknown verb \\\"reboot\\\" (known: status, ping)\",\"ok\":false}\n")
        // A hostile verb is echoed bounded and escaped: still one line.
        let hostile = "{\"verb\":\"a\\nb" + String(repeating: "x", count: 1000) + "\"}"
        let answer = ControlCodec.respond(to: Array(hostile.utf8)) { _ in .error("") }
        XCTAssertEqual(answer.filter { $0 == 0x0A }.count, 1)
        XCTAssertLessThan(answer.count, 200)

        let ok = ControlCodec.respond(to: ControlCodec.encode(ControlRequest.status)) { request in
            XCTAssertEqual(request, .status)
            return .status(sampleReport())
        }
        XCTAssertEqual(try ControlCodec.decodeResponse(ok), .status(sampleReport()))
        XCTAssertEqual(ControlRequestError.empty.response, .error(ControlRequestError.empty.description))
    }

    func testLineReader() {
        var r = ControlLineReader()
        XCTAssertEqual(r.append(Array("{\"verb\":".utf8)), .needMore)
        XCTAssertEqual(r.append(Array("\"status\"}\nignored".utf8)), .line(Array("{\"verb\":\"status\"}".utf8)))
        XCTAssertEqual(r.append(Array("more\n".utf8)), .needMore, "one request per connection")

        var eof = ControlLineReader()
        XCTAssertEqual(eof.append(Array("{\"verb\":\"status\"}".utf8)), .needMore)
        XCTAssertEqual(eof.finish(), .line(Array("{\"verb\":\"status\"}".utf8)))

        var flood = ControlLineReader()
        let chunk = [UInt8](repeating: 0x20, count: 4096)
        var outcome = ControlLineReader.Outcome.needMore
        var sent = 0
        while outcome == .needMore && sent < 1 << 20 {
            outcome = flood.append(chunk)
            sent += chunk.count
        }
        XCTAssertEqual(outcome, .tooLong)
        XCTAssertLessThanOrEqual(sent, ControlCodec.maxRequestBytes + chunk.count)
        XCTAssertEqual(flood.finish(), .needMore)
    }

    // MARK: Human table

    func testStatusTable() {
        let expected = """
            ws0  10.77.0.1/24  listening on 51820
            public key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
            nat: endpoint-independent
            endpoints: 198.51.100.7:51820 (observed), 192.168.1.10:51820 (local)
            anchors: anchor-1 reachable, anchor-2 unreachable

            PEER      ADDRESS                        STATE  REACHED                                     RTT     HANDSHAKE  RX        TX         RECORD
            anchor-1  10.77.0.10/32                  up     direct 203.0.113.10:51820                   23.5ms  12s ago    1.1 MiB   340.0 KiB  -
            laptop    10.77.0.20/32,192.168.50.0/24  up     relay via anchor-1, lan 192.168.1.20:51820  48.0ms  1m3s ago   88.0 KiB  512 B      #7
            phone     10.77.0.30/32                  idle   idle                                        -       never      0 B       0 B        -

            counters: bad_mac=1, replay=3

            warnings:
              - anchor anchor-2 is unreachable: only one anchor is up

            """
        XCTAssertEqual(renderStatusTable(sampleReport()), expected)
    }

    func testStatusTableWhenEmpty() {
        let report = StatusReport(node: .init(publicKey: nodeKey, interface: "ws0", address: "fd00::1/64", listenPort: 0, anchor: true))
        XCTAssertEqual(renderStatusTable(report), """
            ws0  fd00::1/64  listening on 0  anchor
            public key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
            nat: unknown
            endpoints: none known yet
            anchors: none configured

            no peers configured

            """)
    }

    func testReachedColumn() {
        func peer(_ state: StatusReport.PeerState, _ paths: [StatusReport.Path]) -> StatusReport.Peer {
            .init(name: "p", publicKey: keyA, address: [], state: state, paths: paths)
        }
        XCTAssertEqual(StatusText.reached(peer(.handshaking, [])), "handshaking")
        XCTAssertEqual(StatusText.reached(peer(.up, [.init(kind: .direct, remote: "203.0.113.5:51820", active: true)])), "direct 203.0.113.5:51820")
        XCTAssertEqual(StatusText.reached(peer(.up, [.init(kind: .relay, remote: "203.0.113.10:51820", via: "anchor-1", active: true)])), "relay via anchor-1")
        XCTAssertEqual(StatusText.reached(peer(.up, [.init(kind: .relay, remote: "203.0.113.10:51820", active: true)])), "relay 203.0.113.10:51820")
        XCTAssertEqual(StatusText.reached(peer(.up, [.init(kind: .lan, remote: "[fe80::1]:51820", active: true)])), "lan [fe80::1]:51820")
        XCTAssertEqual(StatusText.reached(peer(.idle, [.init(kind: .direct, remote: "203.0.113.5:51820", active: false)])), "idle")
    }

    func testUnits() {
        let ages: [(UInt64, String)] = [(0, "0s"), (59, "59s"), (60, "1m0s"), (3599, "59m59s"), (3600, "1h0m"), (86399, "23h59m"), (86400, "1d0h"), (200_000, "2d7h")]
        for (s, text) in ages { XCTAssertEqual(StatusText.age(seconds: s), text) }
        let sizes: [(UInt64, String)] = [
            (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (1_048_575, "1023.9 KiB"),
            (1_048_576, "1.0 MiB"), (5 << 30, "5.0 GiB"), (3 << 40, "3.0 TiB"), (UInt64.max, "15.9 EiB"),
        ]
        for (b, text) in sizes { XCTAssertEqual(StatusText.bytes(b), text) }
    }
}

/// `wsctl metrics`: the status object as Prometheus text.
final class PrometheusTextTests: XCTestCase {
    func testFamiliesAndSamples() {
        var r = sampleReport()
        r.peers[2].name = "phone \"2\"\\x\ny"
        let text = PrometheusText.render(r)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertTrue(text.hasSuffix("\n"))
        // Every family has HELP and TYPE, once, and every sample belongs to a declared family.
        let types = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        XCTAssertEqual(Set(types).count, types.count)
        for l in lines where !l.hasPrefix("#") {
            let name = l.prefix { $0 != "{" && $0 != " " }
            XCTAssertTrue(types.contains(Substring(name)), "sample of an undeclared family: \(l)")
            XCTAssertNotNil(Double(l.split(separator: " ").last!), "value is not a number: \(l)")
        }
        XCTAssertTrue(lines.contains("whalescale_peer_up{peer=\"anchor-1\"} 1"))
        XCTAssertTrue(lines.contains("whalescale_peer_rx_bytes_total{peer=\"anchor-1\"} 1258291"))
        XCTAssertTrue(lines.contains("whalescale_peer_last_handshake_seconds{peer=\"laptop\"} 63"))
        XCTAssertTrue(lines.contains("whalescale_path_rtt_seconds{peer=\"anchor-1\",kind=\"direct\",remote=\"203.0.113.10:51820\"} 0.0235"))
        XCTAssertTrue(lines.contains("whalescale_anchor_reachable{anchor=\"anchor-2\"} 0"))
        XCTAssertTrue(lines.contains("whalescale_nat_mapping{mapping=\"endpoint-independent\"} 1"))
        XCTAssertTrue(lines.contains("whalescale_counter_total{name=\"replay\"} 3"))
        XCTAssertTrue(lines.contains("whalescale_warnings 1"))
        // A label value with quotes, a backslash and a newline is escaped, never breaks a line.
        XCTAssertTrue(lines.contains("whalescale_peer_up{peer=\"phone \\\"2\\\"\\\\x\\ny\"} 0"))
        // The idle phone has no handshake age: no sample rather than a made-up value.
        XCTAssertFalse(text.contains("whalescale_peer_last_handshake_seconds{peer=\"phone"))
    }
}
