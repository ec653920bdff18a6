import Foundation
import XCTest

@testable import Support
@testable import Wire
@testable import Protocol
@testable import Control

private let keyA = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
private let keyB = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg="
private let keyC = "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8="

/// A node behind a symmetric NAT with two anchors: h2 is direct, h3 (symmetric
/// too, by its own record) relayed through anchor-1, h4 idle.
private func report() -> StatusReport {
    StatusReport(
        node: .init(
            publicKey: keyA, interface: "ws0", address: "10.77.0.21/24", listenPort: 51820,
            endpoints: [
                .init(addr: "192.168.3.10:51820", source: .local),
                .init(addr: "11.0.0.3:40001", source: .observed),
                .init(addr: "11.0.0.3:40002", source: .observed),
            ],
            nat: .init(mapping: .endpointDependent, evidence: [
                .init(anchor: "anchor-1", observed: "11.0.0.3:40001", ageSeconds: 4),
                .init(anchor: "anchor-2", observed: "11.0.0.3:40002", ageSeconds: 65),
            ]),
            uplinks: [.init(index: 0, name: "eth0", source: "routes", present: true)], mtu: 1404),
        anchors: [.init(publicKey: keyB, name: "anchor-1", reachable: true), .init(publicKey: keyC, name: "anchor-2", reachable: true)],
        peers: [
            .init(name: "anchor-1", publicKey: keyB, address: ["10.77.0.1/32"], state: .up,
                  paths: [.init(kind: .direct, remote: "203.0.113.10:51820", rttMs: 1.2, loss: 0, active: true, sources: ["config"])]),
            .init(name: "h2", publicKey: "h2key", address: ["10.77.0.22/32", "192.168.50.0/24"], state: .up,
                  lastHandshakeSecondsAgo: 3,
                  paths: [.init(kind: .direct, local: "udp0", remote: "11.0.0.2:51820", rttMs: 0.84, loss: 0, active: true,
                                 validated: true, usable: true, lastRxSecondsAgo: 0, sources: ["gossip", "candidates"], uplink: "eth0", mtu: 1440,
                                 weight: 0.5, bandwidthBps: 50_000_000)],
                  gossip: .init(sequence: 4, endpoints: [.init(addr: "11.0.0.2:51820", source: .observed)]),
                  byPathKind: [.init(kind: .direct, rxBytes: 2048, rxPackets: 12, txBytes: 4096, txPackets: 20)],
                  reorder: .init(buffering: true, held: 10, releasedInOrder: 90, releasedByTimeout: 1, flushedByPathFailure: 0,
                                 releasedByDepth: 0, droppedLateDuplicate: 0, releasedLate: 2, maxDepthReached: 0, maxHeld: 7)),
            .init(name: "h3", publicKey: "h3key", address: ["10.77.0.23/32"], state: .up, lastHandshakeSecondsAgo: 70,
                  paths: [
                    .init(kind: .relay, remote: "203.0.113.10:51820", via: "anchor-1", rttMs: 4.12, loss: 0, active: true),
                    .init(kind: .direct, remote: "11.0.0.4:40007", active: false, usable: false, sources: ["gossip"]),
                  ],
                  gossip: .init(sequence: 9, endpoints: [
                    .init(addr: "192.168.4.10:51820", source: .local),
                    .init(addr: "11.0.0.4:40007", source: .observed), .init(addr: "11.0.0.4:40008", source: .observed),
                  ]),
                  nextDirectRetrySeconds: 28.6),
            .init(name: "h4", publicKey: "h4key", address: ["10.77.0.24/32"], state: .idle),
        ],
        counters: ["portmap_unavailable": 1, "replay": 2])
}

final class WsctlVerbTests: XCTestCase {

    // MARK: ping on the control socket

    func testPingRequestRoundTrip() throws {
        let line = ControlCodec.encode(ControlRequest.ping(peer: "h2", timeoutMs: 500))
        XCTAssertEqual(String(decoding: line, as: UTF8.self), "{\"peer\":\"h2\",\"timeout_ms\":500,\"verb\":\"ping\"}\n")
        XCTAssertEqual(try ControlCodec.decodeRequest(line).get(), .ping(peer: "h2", timeoutMs: 500))
        XCTAssertEqual(try ControlCodec.decodeRequest(Array(#"{"verb":"ping","peer":"10.77.0.22"}"#.utf8)).get(),
                       .ping(peer: "10.77.0.22", timeoutMs: ControlRequest.defaultPingTimeoutMs))
        XCTAssertEqual(String(decoding: ControlCodec.encode(ControlRequest.status), as: UTF8.self), "{\"verb\":\"status\"}\n")
    }

    func testPingRequestRefusals() {
        let bad = [
            #"{"verb":"ping"}"#, #"{"verb":"ping","peer":""}"#, #"{"verb":"ping","peer":7}"#,
            #"{"verb":"ping","peer":"h2","timeout_ms":0}"#, #"{"verb":"ping","peer":"h2","timeout_ms":4001}"#,
            #"{"verb":"ping","peer":"h2","timeout_ms":100.5}"#, #"{"verb":"ping","peer":"h2","timeout_ms":"1"}"#,
            #"{"verb":"ping","peer":"h2","timeout_ms":true}"#,
            "{\"verb\":\"ping\",\"peer\":\"" + String(repeating: "x", count: 300) + "\"}",
        ]
        for text in bad {
            guard case .failure(.badArgument(let why)) = ControlCodec.decodeRequest(Array(text.utf8)) else {
                XCTFail("accepted: \(text)")
                continue
            }
            XCTAssertFalse(why.isEmpty)
        }
    }

    func testEchoResponseAndLines() throws {
        let direct = EchoReport(peer: "h2", address: "10.77.0.22", answered: true, timeoutMs: 2000, rttMs: 0.84, kind: .direct,
                                remote: "203.0.113.102:51820", observed: "11.0.0.3:40001")
        XCTAssertEqual(direct.line, "pong from h2 (10.77.0.22) via direct 203.0.113.102:51820 in 0.8 ms")
        let relay = EchoReport(peer: "h3", address: "10.77.0.23", answered: true, timeoutMs: 2000, rttMs: 123.4, kind: .relay,
                               remote: "203.0.113.10:51820", via: "anchor-1")
        XCTAssertEqual(relay.line, "pong from h3 (10.77.0.23) via relay anchor-1 (203.0.113.10:51820) in 123 ms")
        let lan = EchoReport(peer: "h5", address: nil, answered: true, timeoutMs: 2000, rttMs: 0.04, kind: .lan, remote: "192.168.1.7:51820")
        XCTAssertEqual(lan.line, "pong from h5 via lan 192.168.1.7:51820 in 0.0 ms")
        let none = EchoReport(peer: "h4", address: "10.77.0.24", answered: false, timeoutMs: 500)
        XCTAssertEqual(none.line, "no pong from h4 (10.77.0.24) within 500 ms")

        for r in [direct, relay, none] {
            let line = ControlCodec.encode(ControlResponse.echo(r))
            XCTAssertEqual(try ControlCodec.decodeResponse(line), .echo(r))
        }
        // Unknown values are null, not missing.
        let text = String(decoding: ControlCodec.encode(ControlResponse.echo(none)), as: UTF8.self)
        XCTAssertEqual(text, #"{"echo":{"address":"10.77.0.24","answered":false,"kind":null,"observed":null,"peer":"h4","remote":null,"rtt_ms":null,"timeout_ms":500,"via":null},"ok":true}"# + "\n")

        var sum = EchoSummary()
        XCTAssertEqual(sum.line, "0 sent, 0 received, 0% lost")
        for r in [direct, none, relay] { sum.add(r) }
        XCTAssertEqual(sum.line, "3 sent, 2 received, 33% lost; rtt min/avg/max 0.8/62.1/123 ms")
    }

    // MARK: naming a peer

    func testPeerQuery() {
        let peers = report().peers
        XCTAssertEqual(try PeerQuery.resolve("h2", in: peers).get(), 1)
        XCTAssertEqual(try PeerQuery.resolve(" h3 ", in: peers).get(), 2)
        XCTAssertEqual(try PeerQuery.resolve(keyB, in: peers).get(), 0)
        XCTAssertEqual(try PeerQuery.resolve("10.77.0.23", in: peers).get(), 2)
        XCTAssertEqual(try PeerQuery.resolve("10.77.0.22/32", in: peers).get(), 1)
        XCTAssertEqual(try PeerQuery.resolve("192.168.50.9", in: peers).get(), 1, "inside a routed subnet")
        for (q, says) in [("10.77.0.99", "no peer's overlay routes hold 10.77.0.99"), ("h", "did you mean h2, h3, h4?"),
                          ("zzz", "peers: anchor-1, h2, h3, h4"), ("", "no peer named")] {
            guard case .failure(let e) = PeerQuery.resolve(q, in: peers) else { XCTFail(q); continue }
            XCTAssertTrue(e.message.contains(says), e.message)
        }
    }

    // MARK: netcheck

    func testNetcheckText() {
        XCTAssertEqual(NetcheckReport(report()).text, """
            nat: endpoint-dependent
              anchor-1 saw 11.0.0.3:40001 (4s ago)
              anchor-2 saw 11.0.0.3:40002 (1m5s ago)
              the anchors saw different public ports for the one socket (11.0.0.3:40001, 11.0.0.3:40002): the NAT maps a new port per destination ("symmetric"), so peers behind such a NAT too are reached through a relay unless a port mapping is in force
            port mapping: none in force (portmap_unavailable=1)
            lan peers: none
            ipv4: yes (local 192.168.3.10; public 11.0.0.3)
            ipv6: no
            anchors: anchor-1 reachable, anchor-2 reachable

            """)
    }

    func testNetcheckMappingLANAndJSON() throws {
        var s = report()
        s.node.endpoints.append(.init(addr: "[2001:db8::7]:51820", source: .local))
        s.peers[1].rxPackets = 5
        s.peers[1].handshakesCompleted = 2
        let text = PrometheusText.render(s)
        XCTAssertTrue(text.contains("\nwhalescale_peer_rx_packets_total{peer=\"h2\"} 5\n"), text)
        XCTAssertTrue(text.contains("\nwhalescale_peer_handshakes_total{peer=\"h2\",result=\"completed\"} 2\n"), text)
        XCTAssertTrue(text.contains("\nwhalescale_peer_handshakes_total{peer=\"h2\",result=\"failed\"} 0\n"), text)
        s.node.endpoints.append(.init(addr: "11.0.0.3:51820", source: .pcp))
        s.peers[1].paths.append(.init(kind: .lan, remote: "192.168.3.11:51820", active: false, usable: true))
        let r = NetcheckReport(s)
        XCTAssertEqual(r.portMappings, [.init(protocol: "pcp", external: "11.0.0.3:51820")])
        XCTAssertEqual(r.lanPeers, [.init(name: "h2", remote: "192.168.3.11:51820")])
        XCTAssertTrue(r.ipv6.available)
        XCTAssertEqual(r.ipv6.local, ["2001:db8::7"])
        XCTAssertTrue(r.text.contains("\nport mapping: pcp 11.0.0.3:51820\n"), r.text)
        XCTAssertTrue(r.text.contains("\nlan peers: h2 192.168.3.11:51820\n"), r.text)
        XCTAssertTrue(r.text.contains("\nipv6: yes (local 2001:db8::7)\n"), r.text)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(ControlCodec.prettyJSON(r).utf8)) as? [String: Any])
        XCTAssertEqual(Set(json.keys), ["nat_mapping", "evidence", "verdict", "port_mappings", "port_mapping_counters", "lan_peers",
                                        "ipv4", "ipv6", "anchors"])
        XCTAssertEqual(json["nat_mapping"] as? String, "endpoint-dependent")
    }

    func testNetcheckVerdicts() {
        XCTAssertTrue(NetcheckReport.verdict(mapping: .endpointIndependent, evidence: []).contains("hole punching works"))
        XCTAssertTrue(NetcheckReport.verdict(mapping: .none, evidence: []).contains("no NAT"))
        XCTAssertTrue(NetcheckReport.verdict(mapping: .unknown, evidence: []).contains("fewer than two anchors"))
        XCTAssertTrue(NetcheckReport.verdict(mapping: .unknown, evidence: [.init(anchor: "a", observed: "1.2.3.4:5", ageSeconds: 0),
                                                                          .init(anchor: "b", observed: "[::1]:5", ageSeconds: 0)])
                        .contains("do not compare"))
    }

    // MARK: explain

    func testExplainRelayedPeer() {
        XCTAssertEqual(Explain.render(report(), peer: 2), """
            h3 (10.77.0.23/32): up, last handshake 1m10s ago
            key h3key
            paths (active first; * = carries data now):
            * relay via anchor-1 (203.0.113.10:51820)  rtt 4.1 ms, loss 0%, anchor reachable  [the anchor relays for both sides]
              direct 11.0.0.4:40007  no answer to pings yet  [gossip: self-signed record seq 9 (observed)]
            gossip record: seq 9, signed by the peer: 192.168.4.10:51820 (local), 11.0.0.4:40007 (observed), 11.0.0.4:40008 (observed)
            active: relay via anchor-1
            why: no direct path answered its pings (1 tried), so data goes through the anchor; the next try for a direct path is in 29 s
            to make it direct: both sides are behind endpoint-dependent (symmetric) NAT; a port mapping (UPnP, NAT-PMP or PCP) on either side, or an endpoint-independent NAT on either side, would allow a direct path

            """)
    }

    func testExplainDirectAndIdlePeers() {
        let direct = Explain.render(report(), peer: 1)
        XCTAssertTrue(direct.contains("* direct 11.0.0.2:51820  rtt 0.8 ms, loss 0%, answers pings  [gossip: self-signed record seq 4 (observed); hint: the peer's candidates or an anchor's introduction (unsigned)]"), direct)
        XCTAssertTrue(direct.contains("\nwhy: a direct path answers its pings; direct is preferred over relay\n"), direct)
        XCTAssertFalse(direct.contains("to make it direct"))
        let idle = Explain.render(report(), peer: 3)
        XCTAssertTrue(idle.contains("paths: none known\ngossip record: none received yet\nactive: none\nwhy: no session"), idle)

        // Only this side symmetric; the peer's record shows one port per address.
        var s = report()
        s.peers[2].gossip?.endpoints.removeLast()
        XCTAssertTrue(Explain.render(s, peer: 2).contains("to make it direct: this node is behind an endpoint-dependent (symmetric) NAT and the peer advertises no port mapping"))
        var validated = report()
        validated.peers[2].paths[1].usable = true
        XCTAssertTrue(Explain.render(validated, peer: 2).contains("\nwhy: direct 11.0.0.4:40007 answers its pings but is not active yet"))
        XCTAssertFalse(Explain.render(validated, peer: 2).contains("to make it direct"))
        s.node.nat.mapping = .endpointIndependent
        s.peers[2].paths.removeLast()
        let neither = Explain.render(s, peer: 2)
        XCTAssertTrue(neither.contains("why: no direct address of the peer is known to try"), neither)
        XCTAssertTrue(neither.contains("to make it direct: neither NAT looks endpoint-dependent"), neither)
    }

    /// `wsctl status`: a `ciphers:` line under the table names each session's cipher,
    /// only for peers that have one (none: no line).
    func testStatusTableNamesCiphers() {
        var s = report()
        XCTAssertFalse(renderStatusTable(s).contains("ciphers:"))
        s.peers[0].cipher = "aes256gcm"
        s.peers[2].cipher = "chacha20poly1305"
        let table = renderStatusTable(s)
        XCTAssertTrue(table.contains("\nciphers: \(s.peers[0].name) aes256gcm, \(s.peers[2].name) chacha20poly1305\n"), table)
    }

    /// The session's cipher follows the key; no session, no cipher.
    func testExplainNamesTheCipher() {
        var s = report()
        s.peers[2].cipher = "aes256gcm"
        XCTAssertTrue(Explain.render(s, peer: 2).contains("\nkey h3key, cipher aes256gcm\n"))
        s.peers[2].cipher = nil
        XCTAssertTrue(Explain.render(s, peer: 2).contains("\nkey h3key\n"))
    }

    /// A path whose address came from the peer's LAN announcement says so.
    func testExplainLanPath() {
        var s = report()
        s.peers[1].paths = [.init(kind: .lan, remote: "192.168.1.11:51820", active: true)]
        s.peers[1].paths[0].sources = ["lan"]
        s.peers[1].lan = .init(addr: "192.168.1.11:51820", source: .lan)
        let text = Explain.render(s, peer: 1)
        XCTAssertTrue(text.contains("lan: the peer's signed LAN announcement (mDNS) came from there (192.168.1.11:51820)"), text)
    }

    func testPacketHandshakeAndPortMappingMetrics() {
        var s = report()
        XCTAssertFalse(PrometheusText.render(s).contains("whalescale_port_mapping{"))
        s.peers[1].rxPackets = 5
        s.peers[1].handshakesCompleted = 2
        let text = PrometheusText.render(s)
        XCTAssertTrue(text.contains("\nwhalescale_peer_rx_packets_total{peer=\"h2\"} 5\n"), text)
        XCTAssertTrue(text.contains("\nwhalescale_peer_handshakes_total{peer=\"h2\",result=\"completed\"} 2\n"), text)
        XCTAssertTrue(text.contains("\nwhalescale_peer_handshakes_total{peer=\"h2\",result=\"failed\"} 0\n"), text)
        s.node.endpoints.append(.init(addr: "11.0.0.3:51820", source: .pcp))
        XCTAssertTrue(PrometheusText.render(s).contains("\nwhalescale_port_mapping{protocol=\"pcp\",external=\"11.0.0.3:51820\"} 1\n"))
    }

    // MARK: the metrics HTTP listener's bytes

    func testMetricsHTTP() {
        XCTAssertEqual(MetricsHTTP.parse(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8)), .needMore)
        XCTAssertEqual(MetricsHTTP.parse(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                       .complete(method: "GET", target: "/metrics", version: "HTTP/1.1"))
        XCTAssertEqual(MetricsHTTP.parse(Array("GET /metrics HTTP/1.0\n\n".utf8)), .complete(method: "GET", target: "/metrics", version: "HTTP/1.0"))
        XCTAssertEqual(MetricsHTTP.parse(Array("\u{1}\u{2}\r\n\r\n".utf8)), .malformed)
        XCTAssertEqual(MetricsHTTP.parse(Array("GET /metrics\r\n\r\n".utf8)), .malformed)
        XCTAssertEqual(MetricsHTTP.parse(Array("GET /metrics SPDY/3\r\n\r\n".utf8)), .malformed)
        XCTAssertEqual(MetricsHTTP.parse([UInt8](repeating: 0x41, count: MetricsHTTP.maxHeadBytes + 1)), .tooLarge)
        XCTAssertEqual(MetricsHTTP.parse(Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n").utf8)), .tooLarge)

        var asked = 0
        let body = { asked += 1; return "whalescale_x 1\n" }
        let ok = MetricsHTTP.respond(to: .complete(method: "GET", target: "/metrics?x=1", version: "HTTP/1.1"), body: body)
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(String(decoding: ok.bytes, as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\nwhalescale_x 1\n")
        let head = MetricsHTTP.respond(to: .complete(method: "HEAD", target: "/metrics", version: "HTTP/1.1"), body: body)
        XCTAssertTrue(String(decoding: head.bytes, as: UTF8.self).hasSuffix("Content-Length: 15\r\nConnection: close\r\n\r\n"))
        XCTAssertEqual(asked, 2)
        XCTAssertEqual(MetricsHTTP.respond(to: .complete(method: "GET", target: "/", version: "HTTP/1.1"), body: body).status, 404)
        XCTAssertEqual(MetricsHTTP.respond(to: .complete(method: "POST", target: "/metrics", version: "HTTP/1.1"), body: body).status, 405)
        XCTAssertEqual(MetricsHTTP.respond(to: .malformed, body: body).status, 400)
        XCTAssertEqual(MetricsHTTP.respond(to: .tooLarge, body: body).status, 431)
        XCTAssertEqual(asked, 2, "errors never build the status")
    }

    // MARK: docs/status-json.md documents every key the daemon emits

    /// Every key path of a fully populated status object (arrays as `[]`,
    /// `counters`' free-form names left out) has a row in docs/status-json.md.
    func testEveryStatusFieldIsDocumented() throws {
        var s = report()
        s.warnings = ["w"]
        let object = try JSONSerialization.jsonObject(with: Data(ControlCodec.prettyJSON(s).utf8))
        var emitted = Set<String>()
        func walk(_ v: Any, _ path: String) {
            if let d = v as? [String: Any] {
                for (k, x) in d {
                    let p = path.isEmpty ? k : "\(path).\(k)"
                    emitted.insert(p)
                    if p != "counters" { walk(x, p) }
                }
            } else if let a = v as? [Any] {
                for x in a { walk(x, path + "[]") }
            }
        }
        walk(object, "")
        XCTAssertTrue(emitted.contains("peers[].paths[].sources"))
        XCTAssertTrue(emitted.contains("node.nat.evidence[].age_s"))

        let doc = try String(contentsOf: Self.repoRoot.appendingPathComponent("docs/status-json.md"), encoding: .utf8)
        let documented = Self.documentedKeys(doc)
        let missing = emitted.subtracting(documented).sorted()
        XCTAssertEqual(missing, [], "keys the daemon emits that docs/status-json.md does not document")
        let stale = documented.subtracting(emitted).sorted()
        XCTAssertEqual(stale, [], "keys docs/status-json.md documents that the status object does not have")
    }

    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The first cell of every table row under a "### `section`" heading
    /// ("### Top level" is the root), joined: "### `node`" + "| `nat.mapping` |" -> node.nat.mapping.
    static func documentedKeys(_ doc: String) -> Set<String> {
        var out = Set<String>()
        var section: String?
        for line in doc.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") { section = nil }
            if line.hasPrefix("### ") {
                let title = line.dropFirst(4)
                if title == "Top level" { section = "" } else if title.hasPrefix("`"), title.hasSuffix("`") {
                    section = String(title.dropFirst().dropLast())
                } else { section = nil }
                continue
            }
            guard let section, line.hasPrefix("| `") else { continue }
            let cell = line.dropFirst(3).prefix { $0 != "`" }
            out.insert(section.isEmpty ? String(cell) : "\(section).\(cell)")
        }
        return out
    }
}
