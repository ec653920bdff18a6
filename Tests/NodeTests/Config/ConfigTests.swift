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

private let keyA = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
private let keyB = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg="
private let keyC = "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8="
private let nodeSecret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

/// A minimal valid [node] table (3 lines), for tests about peers.
private let nodeTable = """
    [node]
    private_key_file = "/etc/whalescale/ws0.key"
    address = "10.77.0.1/24"
    """

final class ConfigTests: XCTestCase {

    // MARK: Valid configurations

    func testFullConfig() throws {
        let text = """
            # Whalescale node on the home server
            [node]
            private_key_file = "/etc/whalescale/ws0.key"   # wsctl genkey > ...
            interface = "ws1"
            address = "10.77.0.1/24"
            listen_port = 41641
            anchor = true
            state_dir = "/srv/ws/state"
            control_socket = "/srv/ws/ctl.sock"

            [[peer]]
            name = "anchor-1"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"
            endpoint = "203.0.113.10:51820"
            anchor = true
            persistent_keepalive = 25

            [[peer]]
            name = "laptop"
            public_key = "\(keyB)"
            address = [
              "10.77.0.20/32",     # its overlay address
              "192.168.50.0/24",   # and the LAN behind it
              "fd00:77::20/128",
            ]
            endpoint = "[2001:db8::20]:51820"
            """
        let c = try Config.parse(text, path: "/etc/whalescale/ws1.toml")
        XCTAssertEqual(c.node.privateKey, .file("/etc/whalescale/ws0.key"))
        XCTAssertEqual(c.node.interface, "ws1")
        XCTAssertEqual(c.node.address, CIDR("10.77.0.1/24"))
        XCTAssertEqual(c.node.listenPort, 41641)
        XCTAssertTrue(c.node.anchor)
        XCTAssertEqual(c.node.stateDir, "/srv/ws/state")
        XCTAssertEqual(c.node.controlSocket, "/srv/ws/ctl.sock")

        XCTAssertEqual(c.peers.count, 2)
        let a = c.peers[0]
        XCTAssertEqual(a.name, "anchor-1")
        XCTAssertEqual(a.publicKey, keyA)
        XCTAssertEqual(a.addresses, [CIDR("10.77.0.10/32")!])
        XCTAssertEqual(a.endpoint, Endpoint.v4(203, 0, 113, 10, port: 51820))
        XCTAssertTrue(a.anchor)
        XCTAssertEqual(a.persistentKeepalive, .seconds(UInt64(25)))
        XCTAssertEqual(a.line, 11)

        let l = c.peers[1]
        XCTAssertEqual(l.name, "laptop")
        XCTAssertEqual(l.addresses.map(\.description), ["10.77.0.20/32", "192.168.50.0/24", "fd00:77::20/128"])
        XCTAssertEqual(l.endpoint?.description, "[2001:db8::20]:51820")
        XCTAssertFalse(l.anchor)
        XCTAssertNil(l.persistentKeepalive)
        XCTAssertEqual(l.line, 19)

        XCTAssertEqual(c.anchors.map(\.name), ["anchor-1"])
        XCTAssertEqual(c.peer(named: "laptop")?.publicKey, keyB)
        // The node is itself an anchor, so one anchor peer is not a warning.
        XCTAssertEqual(c.warnings, [])
    }

    func testDefaults() throws {
        let c = try Config.parse("""
            [node]
            private_key = "\(nodeSecret)"
            address = "fd00:77::1/64"
            """)
        XCTAssertEqual(c.node.privateKey, .inline(nodeSecret))
        XCTAssertEqual(c.node.interface, "ws0")
        XCTAssertEqual(c.node.listenPort, 51820)
        XCTAssertFalse(c.node.anchor)
        XCTAssertEqual(c.node.relayRateMbit, 10_000)
        XCTAssertEqual(c.node.stateDir, "/var/lib/whalescale/ws0")
        XCTAssertEqual(c.node.controlSocket, "/run/whalescale/ws0.sock")
        XCTAssertEqual(c.peers, [])
        XCTAssertEqual(c.warnings, [])
    }

    func testDefaultPathsFollowTheInterface() throws {
        let c = try Config.parse("""
            [node]
            private_key = "\(nodeSecret)"
            address = "10.77.0.1/24"
            interface = "mesh7"
            """)
        XCTAssertEqual(c.node.stateDir, "/var/lib/whalescale/mesh7")
        XCTAssertEqual(c.node.controlSocket, "/run/whalescale/mesh7.sock")
    }

    /// Inline tables and dotted keys are legal TOML: they parse, and their errors still have lines.
    func testInlineTablesAndDottedKeys() throws {
        let text = """
            node.private_key_file = "/k"
            node.address = "10.77.0.1/24"
            peer = [
              { name = "a", public_key = "\(keyA)", address = "10.77.0.10/32", anchor = true, endpoint = "192.0.2.1:1" },
              { name = "b", public_key = "\(keyB)", address = "10.77.0.10/32" },
            ]
            """
        XCTAssertError(text, line: 5, field: "peer[1].address", message: "10.77.0.10/32 overlaps 10.77.0.10/32 of peer[0].address (\"a\", line 4)")
        let ok = try Config.parse(text.replacingOccurrences(of: "address = \"10.77.0.10/32\" }", with: "address = \"10.77.0.11/32\" }"))
        XCTAssertEqual(ok.peers.map(\.name), ["a", "b"])
        XCTAssertEqual(ok.node.privateKey, .file("/k"))
    }

    func testWarningsAboutAnchors() throws {
        let none = try Config.parse(nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"
            """)
        XCTAssertEqual(none.warnings, ["config.toml:4: peer: warning: no peer is an anchor: nodes behind NAT will find each other only through static endpoints"])

        let one = try Config.parse(nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"
            anchor = true
            """)
        XCTAssertEqual(one.warnings, [
            "config.toml:8: peer[0].anchor: warning: only one anchor: when it is down, roaming nodes cannot rejoin; add a second on another network",
            "config.toml:4: peer[0]: warning: anchor \"a\" has no endpoint: without a static endpoint it is not treated as an anchor (no relay, rendezvous or anchor probes through it)",
        ])
    }

    func testNodeAddressList() throws {
        let c = try Config.parse("""
            [node]
            private_key = "\(nodeSecret)"
            address = ["10.77.0.1/24", "fd77::1/64"]

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = ["10.77.0.10/32", "fd77::10/128"]
            """)
        XCTAssertEqual(c.node.addresses.map(\.description), ["10.77.0.1/24", "fd77::1/64"])
        XCTAssertEqual(c.node.address.description, "10.77.0.1/24")
        XCTAssertError("[node]\nprivate_key_file = \"/k\"\naddress = [\"10.77.0.1/24\", \"10.77.0.1/16\"]", line: 3, field: "node.address[1]",
                       message: "10.77.0.1 is already one of this node's addresses")
        XCTAssertError("[node]\nprivate_key_file = \"/k\"\naddress = []", line: 3, field: "node.address",
                       message: "is empty: a node needs at least one address")
        XCTAssertError("[node]\nprivate_key_file = \"/k\"\naddress = [\"10.77.0.1/24\", \"fd77::1\"]", line: 3, field: "node.address[1]",
                       message: nil)
        // A peer route may not cover any of them.
        XCTAssertError("""
            [node]
            private_key_file = "/k"
            address = ["10.77.0.1/24", "fd77::1/64"]
            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = "fd77::/64"
            """, line: 7, field: "peer[0].address", message: "fd77::/64 contains this node's own address fd77::1 (node.address, line 3)")
    }

    func testReactors() throws {
        let auto = try Config.parse(nodeTable)
        XCTAssertEqual(auto.node.reactors, 0)
        XCTAssertGreaterThanOrEqual(auto.node.reactorCount, 1, "0: one per online core")
        XCTAssertLessThanOrEqual(auto.node.reactorCount, NodeConfig.maxAutoReactors)
        let three = try Config.parse(nodeTable + "\nreactors = 3")
        XCTAssertEqual(three.node.reactorCount, 3, "more reactors than cores is allowed (and useless)")
        XCTAssertError(nodeTable + "\nreactors = 65", line: 4, field: "node.reactors",
                       message: "65 is out of range (0...64; 0 = one per online core)")
        XCTAssertError(nodeTable + "\nreactors = -1", line: 4, field: "node.reactors",
                       message: "-1 is out of range (0...64; 0 = one per online core)")
        XCTAssertError(nodeTable + "\nreactors = \"all\"", line: 4, field: "node.reactors",
                       message: "expected an integer, found a string")
    }

    func testPortMapping() throws {
        XCTAssertEqual(try Config.parse(nodeTable).node.portMapping, [.pcp, .natpmp, .upnp], "default: on, PCP first")
        XCTAssertEqual(try Config.parse(nodeTable + "\nport_mapping = [\"upnp\"]").node.portMapping, [.upnp])
        XCTAssertEqual(try Config.parse(nodeTable + "\nport_mapping = []").node.portMapping, [], "[] = off")
        XCTAssertError(nodeTable + "\nport_mapping = [\"stun\"]", line: 4, field: "node.port_mapping",
                       message: "\"stun\" is not a port-mapping protocol (pcp, natpmp, upnp)")
        XCTAssertError(nodeTable + "\nport_mapping = [\"pcp\", \"pcp\"]", line: 4, field: "node.port_mapping",
                       message: "\"pcp\" is listed twice")
        XCTAssertError(nodeTable + "\nport_mapping = true", line: 4, field: "node.port_mapping",
                       message: "expected an array of \"pcp\", \"natpmp\", \"upnp\" ([] = off), found a boolean")
    }

    func testUplinks() throws {
        XCTAssertNil(try Config.parse(nodeTable).node.uplinks, "default: every interface with a route to the outside")
        XCTAssertEqual(try Config.parse(nodeTable + "\nuplinks = [\"wlan0\", \"wwan0\"]").node.uplinks, ["wlan0", "wwan0"])
        XCTAssertError(nodeTable + "\nuplinks = []", line: 4, field: "node.uplinks",
                       message: "is empty: list at least one interface, or leave the key out for every interface with a route to the outside")
        XCTAssertError(nodeTable + "\nuplinks = [\"wlan0\", \"wlan0\"]", line: 4, field: "node.uplinks",
                       message: "\"wlan0\" is listed twice")
        XCTAssertError(nodeTable + "\nuplinks = [\"ws0\"]", line: 4, field: "node.uplinks",
                       message: "\"ws0\" is this node's own tunnel interface (node.interface)")
        XCTAssertError(nodeTable + "\nuplinks = [\"lo\"]", line: 4, field: "node.uplinks",
                       message: "\"lo\" is the loopback interface, not a way out")
        XCTAssertError(nodeTable + "\nuplinks = [\"a/b\"]", line: 4, field: "node.uplinks",
                       message: "\"a/b\" is not a valid interface name: use printable ASCII without '/', ':' or spaces")
        XCTAssertError(nodeTable + "\nuplinks = \"wlan0\"", line: 4, field: "node.uplinks",
                       message: "expected an array of interface names, e.g. [\"wlan0\", \"wwan0\"], found a string")
        XCTAssertError(nodeTable + "\nuplinks = [1]", line: 4, field: "node.uplinks[0]", message: "expected a string, found an integer")
        let nine = (0..<9).map { "\"e\($0)\"" }.joined(separator: ", ")
        XCTAssertError(nodeTable + "\nuplinks = [\(nine)]", line: 4, field: "node.uplinks", message: "has 9 interfaces; at most 8")
    }

    /// `[node] mtu`: a cap on the tunnel MTU, 1280...65535.
    func testMTU() throws {
        XCTAssertNil(try Config.parse(nodeTable).node.mtu, "default: no cap")
        XCTAssertEqual(try Config.parse(nodeTable + "\nmtu = 1420").node.mtu, 1420)
        XCTAssertEqual(try Config.parse(nodeTable + "\nmtu = 1280").node.mtu, 1280)
        XCTAssertError(nodeTable + "\nmtu = 1279", line: 4, field: "node.mtu", message: "1279 is out of range (1280...65535 bytes)")
        XCTAssertError(nodeTable + "\nmtu = 65536", line: 4, field: "node.mtu", message: "65536 is out of range (1280...65535 bytes)")
    }

    func testLanDiscovery() throws {
        XCTAssertTrue(try Config.parse(nodeTable).node.lanDiscovery, "default: on")
        XCTAssertFalse(try Config.parse(nodeTable + "\nlan_discovery = false").node.lanDiscovery)
        XCTAssertError(nodeTable + "\nlan_discovery = \"yes\"", line: 4, field: "node.lan_discovery", message: nil)
    }

    func testRelayRate() throws {
        let anchor = try Config.parse(nodeTable + "\nanchor = true\nrelay_rate_mbit = 0")
        XCTAssertEqual(anchor.node.relayRateMbit, 0)
        XCTAssertEqual(anchor.warnings, [])
        let member = try Config.parse(nodeTable + "\nrelay_rate_mbit = 50")
        XCTAssertEqual(member.node.relayRateMbit, 50)
        XCTAssertEqual(member.warnings, ["config.toml:4: node.relay_rate_mbit: warning: has an effect only on an anchor (anchor = true); this node relays for no one"])
        let budget = ConnectivityTimings.relayBudget(mbit: 1000)
        XCTAssertEqual(budget.bytesPerSecond, 125_000_000)
        XCTAssertEqual(budget.burst, 2_500_000)
        XCTAssertEqual(ConnectivityTimings.relayBudget(mbit: 8).burst, 1 << 20)
    }

    // MARK: Errors, each with its line

    func testSyntaxErrorHasLineAndColumn() {
        let text = """
            [node]
            address = "10.77.0.1/24"
            listen_port = = 5
            """
        do {
            _ = try Config.parse(text)
            XCTFail("parsed")
        } catch {
            XCTAssertEqual(error.line, 3)
            XCTAssertNotNil(error.column)
            XCTAssertEqual(error.field, "")
            XCTAssertTrue(error.description.hasPrefix("config.toml:3:"), error.description)
            XCTAssertTrue(error.message.hasPrefix("TOML syntax error: "), error.message)
        }
    }

    /// Found by ws-fuzz (Fuzz/regressions/config): toml++ asserts, aborting the
    /// process, on a table header that does not start with a key character.
    func testTableHeaderWithoutAKeyIsASyntaxErrorNotAnAbort() {
        for header in ["[é]", "[[é]]", "[ €]", "[=]", "[#]", "[", "[.]", "[\r0]"] {
            XCTAssertError(nodeTable + "\n" + header + "\nx = 1", line: 4, field: "",
                           message: "TOML syntax error: a table header must start with a key")
        }
    }

    /// Found by ws-fuzz (Fuzz/regressions/config/toml-brace-in-array-abort,
    /// `p=[}s `): toml++ asserts where an array expects a value and sees '}'.
    /// Inside a string or a comment a '}' is text, and an inline table in an
    /// array still parses.
    func testBraceWhereAnArrayExpectsAValueIsASyntaxErrorNotAnAbort() {
        for bad in ["p = [}]", "p=[}s ", "p = [1, }", "p = [[}]]", "p = [\n}]", "p = [ # c\n }]", "p = [{a = 1}, }]"] {
            let brace = 4 + bad.prefix { $0 != "}" }.filter { $0 == "\n" }.count
            XCTAssertError(nodeTable + "\n" + bad, line: brace, field: "",
                           message: "TOML syntax error: '}' inside an array, where a value or ']' is expected")
        }
        XCTAssertError(nodeTable + "\np = [1, }", line: 4, field: "",
                       message: "TOML syntax error: '}' inside an array, where a value or ']' is expected")
        for fine in ["p = [\"}\"]", "p = ['}']", "p = [1] # }", "p = [{a = 1}, {b = \"}\"}]", "p = [ # }\n 1]"] {
            do {
                _ = try Config.parse(nodeTable + "\n" + fine)
            } catch {
                XCTAssertFalse(error.message.contains("inside an array"), "\(fine): \(error)")
            }
        }
    }

    func testDuplicateKeyIsASyntaxError() {
        XCTAssertError(nodeTable + "\naddress = \"10.77.0.2/24\"", line: 4, field: "", message: nil)
    }

    func testGossipTable() throws {
        XCTAssertEqual(try Config.parse(nodeTable).gossip.antiEntropySeconds, 300, "the default without [gossip]")
        XCTAssertEqual(try Config.parse(nodeTable + "\n\n[gossip]\nanti_entropy_s = 60").gossip.antiEntropySeconds, 60)
        XCTAssertError(nodeTable + "\n\n[gossip]\nanti_entropy_s = 5", line: 6, field: "gossip.anti_entropy_s",
                       message: "5 is out of range (10...86400 seconds)")
        XCTAssertError(nodeTable + "\n\n[gossip]\nanti_entropy_s = \"300\"", line: 6, field: "gossip.anti_entropy_s",
                       message: "expected an integer, found a string")
        XCTAssertError("gossip = 1\n" + nodeTable, line: 1, field: "gossip", message: nil)
    }

    /// docs/config.md's reference table has a row for every key the parser
    /// accepts, and none for a key it refuses.
    func testTheReferenceTableListsExactlyTheAcceptedKeys() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/config.md"), encoding: .utf8)
        var inReference = false
        var documented = Set<String>()
        for line in doc.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") { inReference = line == "## Reference" }
            guard inReference, line.hasPrefix("| `") else { continue }
            documented.insert(String(line.dropFirst(3).prefix { $0 != "`" }))
        }
        var accepted: Set<String> = ["[node]", "[[peer]]", "[gossip]", "[metrics]"]
        for k in ConfigParser.nodeKeys { accepted.insert("node." + k) }
        for k in ConfigParser.peerKeys { accepted.insert("peer." + k) }
        for k in ConfigParser.gossipKeys { accepted.insert("gossip." + k) }
        for k in ConfigParser.metricsKeys { accepted.insert("metrics." + k) }
        XCTAssertEqual(Set(ConfigParser.rootKeys), ["node", "peer", "gossip", "metrics"], "a new table needs its rows too")
        XCTAssertEqual(accepted.subtracting(documented).sorted(), [], "accepted but not in docs/config.md's reference")
        XCTAssertEqual(documented.subtracting(accepted).sorted(), [], "in the reference but refused by the parser")
    }

    /// `[metrics] listen` and `node.control_group` (docs/config.md, docs/wsctl.md).
    func testMetricsAndControlGroup() throws {
        let plain = try Config.parse(nodeTable)
        XCTAssertNil(plain.metrics.listen)
        XCTAssertNil(plain.node.controlGroup)
        XCTAssertEqual(try Config.parse(nodeTable + "\n\n[metrics]\nlisten = \"127.0.0.1:9586\"").metrics.listen, Endpoint("127.0.0.1:9586"))
        XCTAssertEqual(try Config.parse(nodeTable + "\n\n[metrics]\nlisten = \"[::1]:9586\"").metrics.listen, Endpoint("[::1]:9586"))
        XCTAssertNil(try Config.parse(nodeTable + "\n\n[metrics]").metrics.listen)
        XCTAssertError(nodeTable + "\n\n[metrics]\nlisten = \"localhost:9586\"", line: 6, field: "metrics.listen",
                       message: "\"localhost:9586\" is not an address and port such as \"127.0.0.1:9586\" or \"[::1]:9586\"")
        XCTAssertError(nodeTable + "\n\n[metrics]\nlisten = \"127.0.0.1:0\"", line: 6, field: "metrics.listen", message: nil)
        XCTAssertError(nodeTable + "\n\n[metrics]\nlisten = 9586", line: 6, field: "metrics.listen", message: "expected a string, found an integer")
        XCTAssertError(nodeTable + "\n\n[metrics]\nlisen = \"127.0.0.1:9586\"", line: 6, field: "metrics.lisen",
                       message: "unknown key (did you mean listen?)")
        XCTAssertEqual(try Config.parse(nodeTable + "\ncontrol_group = \"wheel\"").node.controlGroup, "wheel")
        XCTAssertEqual(try Config.parse(nodeTable + "\ncontrol_group = \"1001\"").node.controlGroup, "1001")
        XCTAssertError(nodeTable + "\ncontrol_group = \"a b\"", line: 4, field: "node.control_group", message: nil)
        XCTAssertError(nodeTable + "\ncontrol_group = \"\"", line: 4, field: "node.control_group", message: nil)
        // The group must exist on this host (checked at start and by --check-config, not by parse).
        XCTAssertEqual(try Config.parse(nodeTable + "\ncontrol_group = \"root\"").controlGroupID(), 0)
        XCTAssertEqual(try Config.parse(nodeTable + "\ncontrol_group = \"4242\"").controlGroupID(), 4242)
        XCTAssertNil(try Config.parse(nodeTable).controlGroupID())
        let unknown = try Config.parse(nodeTable + "\ncontrol_group = \"no-such-group-here\"", path: "/etc/whalescale/ws0.toml")
        XCTAssertThrowsError(try unknown.controlGroupID()) { e in
            XCTAssertEqual("\(e)", "/etc/whalescale/ws0.toml:4: node.control_group: no group \"no-such-group-here\" on this host")
        }
    }

    func testUnknownKeys() {
        XCTAssertError(nodeTable + "\nlisten_prot = 5", line: 4, field: "node.listen_prot", message: "unknown key (did you mean listen_port?)")
        XCTAssertError(nodeTable + "\n\n[relay]\nrate = 300", line: 5, field: "relay",
                       message: "unknown key (top-level tables are node, peer, gossip, metrics)")
        XCTAssertError(nodeTable + "\n\n[gossip]\nanti_entropy = 300", line: 6, field: "gossip.anti_entropy",
                       message: "unknown key (did you mean anti_entropy_s?)")
        XCTAssertError(nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"
            allowed_ips = "10.0.0.0/8"
            """, line: 8, field: "peer[0].allowed_ips", message: "unknown key (known keys are name, public_key, address, endpoint, anchor, persistent_keepalive, wireguard, preshared_key_file)")
        // The first unknown key in the file is reported, whatever TOMLKit's key order.
        XCTAssertError(nodeTable + "\nzzz = 1\naaa = 2", line: 4, field: "node.zzz", message: nil)
    }

    func testWrongTypes() {
        XCTAssertError(nodeTable + "\nlisten_port = \"51820\"", line: 4, field: "node.listen_port", message: "expected an integer, found a string")
        XCTAssertError(nodeTable + "\nanchor = \"yes\"", line: 4, field: "node.anchor", message: "expected true or false, found a string")
        XCTAssertError(nodeTable + "\ninterface = 0", line: 4, field: "node.interface", message: "expected a string, found an integer")
        XCTAssertError("node = 5", line: 1, field: "node", message: "expected a table ([node]), found an integer")
        XCTAssertError(nodeTable + "\n[peer]\nname = \"a\"", line: 4, field: "peer", message: "expected [[peer]] tables, found a table")
        XCTAssertError(nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = 10
            """, line: 7, field: "peer[0].address", message: "expected a string or an array of strings, found an integer")
        XCTAssertError(nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = ["10.77.0.10/32",
                       1.5]
            """, line: 8, field: "peer[0].address[1]", message: "expected a string, found a floating-point number")
    }

    func testMissingFieldsPointAtTheirTable() {
        XCTAssertError("[[peer]]\nname = \"a\"", line: nil, field: "node", message: "missing [node] table")
        XCTAssertError("\n[node]\nprivate_key_file = \"/k\"", line: 2, field: "node.address",
                       message: "missing (this node's overlay address, e.g. \"10.77.0.1/24\")")
        XCTAssertError("[node]\naddress = \"10.77.0.1/24\"", line: 1, field: "node", message: "missing private_key_file (or private_key)")
        let twoPeers = nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"

            [[peer]]
            public_key = "\(keyB)"
            address = "10.77.0.11/32"
            """
        XCTAssertError(twoPeers, line: 9, field: "peer[1].name", message: "missing (every peer needs a unique name)")
        XCTAssertError(nodeTable + "\n[[peer]]\nname = \"a\"\naddress = \"10.77.0.10/32\"", line: 4, field: "peer[0].public_key", message: "missing")
        XCTAssertError(nodeTable + "\n[[peer]]\nname = \"a\"\npublic_key = \"\(keyA)\"", line: 4, field: "peer[0].address",
                       message: "missing (the overlay addresses routed to this peer, e.g. \"10.77.0.10/32\")")
    }

    func testPrivateKeyRules() {
        XCTAssertError("""
            [node]
            private_key_file = "/k"
            address = "10.77.0.1/24"
            private_key = "\(nodeSecret)"
            """, line: 4, field: "node.private_key", message: "set only one of private_key and private_key_file")
        // The bad value is a would-be secret: it must not appear in the message.
        let secretish = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
        XCTAssertError("[node]\naddress = \"10.77.0.1/24\"\nprivate_key = \"\(secretish)\"", line: 3, field: "node.private_key",
                       message: "is not a base64 key of 32 bytes (as printed by wsctl genkey)")
        XCTAssertError("[node]\naddress = \"10.77.0.1/24\"\nprivate_key_file = \"etc/ws0.key\"", line: 3, field: "node.private_key_file",
                       message: "\"etc/ws0.key\" is not an absolute path")
    }

    func testNodeValueRules() {
        XCTAssertError(nodeTable + "\ninterface = \"whalescale-mesh0\"", line: 4, field: "node.interface",
                       message: "\"whalescale-mesh0\" is longer than 15 bytes, the Linux limit (IFNAMSIZ)")
        XCTAssertError(nodeTable + "\ninterface = \"ws/0\"", line: 4, field: "node.interface",
                       message: "\"ws/0\" is not a valid interface name: use printable ASCII without '/', ':' or spaces")
        XCTAssertError(nodeTable + "\ninterface = \"\"", line: 4, field: "node.interface", message: "\"\" is empty")
        XCTAssertError(nodeTable + "\nlisten_port = 65536", line: 4, field: "node.listen_port", message: "65536 is not a port (0...65535)")
        XCTAssertError(nodeTable + "\nlisten_port = -1", line: 4, field: "node.listen_port", message: "-1 is not a port (0...65535)")
        XCTAssertError(nodeTable + "\nrelay_rate_mbit = -5", line: 4, field: "node.relay_rate_mbit",
                       message: "-5 is out of range (0...100000 Mbit/s; 0 = no limit)")
        XCTAssertError(nodeTable + "\nrelay_rate_mbit = 100001", line: 4, field: "node.relay_rate_mbit",
                       message: "100001 is out of range (0...100000 Mbit/s; 0 = no limit)")
        XCTAssertError(nodeTable + "\nrelay_rate_mbit = \"fast\"", line: 4, field: "node.relay_rate_mbit",
                       message: "expected an integer, found a string")
        XCTAssertError(nodeTable + "\nstate_dir = \"state\"", line: 4, field: "node.state_dir", message: "\"state\" is not an absolute path")
        let long = "/run/" + String(repeating: "x", count: 103)
        XCTAssertError(nodeTable + "\ncontrol_socket = \"\(long)\"", line: 4, field: "node.control_socket",
                       message: "is longer than 107 bytes, the limit of a UNIX socket path")
        XCTAssertError("[node]\nprivate_key_file = \"/k\"\naddress = \"10.77.0.1\"", line: 3, field: "node.address",
                       message: "\"10.77.0.1\" is not a valid CIDR: missing /prefix-length (write 10.77.0.10/32 or fd00::10/128 for a single address)")
        XCTAssertError("[node]\nprivate_key_file = \"/k\"\naddress = \"10.77.0.1/33\"", line: 3, field: "node.address",
                       message: "\"10.77.0.1/33\" is not a valid CIDR: prefix length \"33\" is not in 0...32")
    }

    /// The example of the brief, to the character.
    func testBadPeerCIDR() {
        let text = """
            [node]
            private_key_file = "/etc/whalescale/ws0.key"
            address = "10.77.0.1/24"

            [[peer]]
            name = "anchor-1"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"

            [[peer]]
            name = "laptop"
            address = "10.77.0.300/32"
            public_key = "\(keyB)"
            """
        XCTAssertError(text, line: 12, field: "peer[1].address",
                       message: "\"10.77.0.300/32\" is not a valid CIDR: \"10.77.0.300\" is not an IPv4 or IPv6 address")
        XCTAssertThrowsError(try Config.parse(text)) { e in
            XCTAssertTrue("\(e)".hasPrefix("config.toml:12: peer[1].address: \"10.77.0.300/32\" is not a valid CIDR"), "\(e)")
        }
    }

    func testPeerRouteRules() {
        func peer(_ address: String) -> String {
            nodeTable + "\n\n[[peer]]\nname = \"a\"\npublic_key = \"\(keyA)\"\naddress = \(address)"
        }
        XCTAssertError(peer("\"10.77.0.5/24\""), line: 8, field: "peer[0].address",
                       message: "\"10.77.0.5/24\" has host bits set: write 10.77.0.0/24 for the network, or 10.77.0.5/32 for one address")
        XCTAssertError(peer("[]"), line: 8, field: "peer[0].address", message: "is empty: a peer needs at least one address")
        XCTAssertError(peer("[\n  \"10.77.0.10/32\",\n  # a comment with a \"quote\n  \"fd00::/129\",\n]"), line: 11, field: "peer[0].address[1]",
                       message: "\"fd00::/129\" is not a valid CIDR: prefix length \"129\" is not in 0...128")
        XCTAssertError(peer("\"10.77.0.0/24\""), line: 8, field: "peer[0].address",
                       message: "10.77.0.0/24 contains this node's own address 10.77.0.1 (node.address, line 3)")
        XCTAssertError(peer("[\"172.16.0.0/12\", \"172.17.0.0/16\"]"), line: 8, field: "peer[0].address[1]",
                       message: "172.17.0.0/16 overlaps 172.16.0.0/12 of peer[0].address[0] (line 8)")
    }

    /// A static endpoint inside an address routed into the tunnel would send the
    /// tunnel's UDP through the tunnel (docs/site-to-site.md): refused with its line.
    func testEndpointInsideTheOverlayIsRefused() {
        func peers(_ endpoint: String) -> String {
            nodeTable + """

                [[peer]]
                name = "edge2"
                public_key = "\(keyA)"
                address = ["10.77.0.2/32", "192.168.20.0/24"]
                endpoint = "\(endpoint)"
                """
        }
        XCTAssertError(peers("192.168.20.1:51820"), line: 8, field: "peer[0].endpoint",
                       message: "192.168.20.1:51820 is inside 192.168.20.0/24 of peer[0].address[1] (\"edge2\", line 7), which is routed into the tunnel: packets to it would go through the tunnel itself")
        XCTAssertError(peers("10.77.0.9:51820"), line: 8, field: "peer[0].endpoint",
                       message: "10.77.0.9:51820 is inside this node's overlay prefix 10.77.0.0/24 (node.address): packets to it would go through the tunnel itself")
        XCTAssertNoThrow(try Config.parse(peers("11.0.0.2:51820")), "the router's public address is fine")
    }

    func testOverlapAcrossPeers() {
        let text = nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = ["10.77.0.10/32", "fd00:77::/64"]

            [[peer]]
            name = "b"
            public_key = "\(keyB)"
            address = "10.77.0.11/32"

            [[peer]]
            name = "c"
            public_key = "\(keyC)"
            address = [
                "192.168.0.0/16",
                "fd00:77::8000/113",
            ]
            """
        XCTAssertError(text, line: 19, field: "peer[2].address[1]",
                       message: "fd00:77::8000/113 overlaps fd00:77::/64 of peer[0].address[1] (\"a\", line 7)")
    }

    func testDuplicatePeers() {
        let sameName = nodeTable + """

            [[peer]]
            name = "a"
            public_key = "\(keyA)"
            address = "10.77.0.10/32"
            [[peer]]
            name = "a"
            public_key = "\(keyB)"
            address = "10.77.0.11/32"
            """
        XCTAssertError(sameName, line: 9, field: "peer[1].name", message: "\"a\" is already the name of peer[0] (line 5)")
        let sameKey = sameName.replacingOccurrences(of: "name = \"a\"\npublic_key = \"\(keyB)\"", with: "name = \"b\"\npublic_key = \"\(keyA)\"")
        XCTAssertError(sameKey, line: 10, field: "peer[1].public_key", message: "is already the key of peer[0] (\"a\", line 6)")
    }

    func testPeerValueRules() {
        func peer(_ extra: String) -> String {
            nodeTable + "\n[[peer]]\nname = \"a\"\npublic_key = \"\(keyA)\"\naddress = \"10.77.0.10/32\"\n" + extra
        }
        XCTAssertError(peer("endpoint = \"anchor.example.com:51820\""), line: 8, field: "peer[0].endpoint",
                       message: "\"anchor.example.com:51820\" is not IPv4:port or [IPv6]:port with a port in 1...65535 (hostnames are not accepted)")
        XCTAssertError(peer("endpoint = \"203.0.113.10:0\""), line: 8, field: "peer[0].endpoint", message: nil)
        XCTAssertError(peer("endpoint = \"203.0.113.10\""), line: 8, field: "peer[0].endpoint", message: nil)
        XCTAssertError(peer("endpoint = \"2001:db8::1:51820\""), line: 8, field: "peer[0].endpoint", message: nil)
        XCTAssertError(peer("endpoint = \"203.0.113.010:51820\""), line: 8, field: "peer[0].endpoint", message: nil)
        XCTAssertError(peer("persistent_keepalive = 0"), line: 8, field: "peer[0].persistent_keepalive",
                       message: "0 is not in 1...3600 seconds (leave it out to disable)")
        XCTAssertError(peer("persistent_keepalive = 3601"), line: 8, field: "peer[0].persistent_keepalive", message: nil)
        XCTAssertError(nodeTable + "\n[[peer]]\nname = \"my laptop\"", line: 5, field: "peer[0].name",
                       message: "\"my laptop\" may contain only letters, digits, '-', '_' and '.'")
        XCTAssertError(nodeTable + "\n[[peer]]\nname = \"a\"\npublic_key = \"AQEB\"", line: 6, field: "peer[0].public_key",
                       message: "\"AQEB\" is not a base64 key of 32 bytes")
    }

    func testNULByteIsRefused() {
        XCTAssertError(nodeTable + "\n# \u{0}", line: 4, field: "", message: "contains a NUL byte")
    }

    func testOwnKeyAsPeer() throws {
        let c = try Config.parse(nodeTable + "\n[[peer]]\nname = \"a\"\npublic_key = \"\(keyA)\"\naddress = \"10.77.0.10/32\"\n")
        XCTAssertNoThrow(try c.checkNoPeerHasKey(keyB))
        XCTAssertThrowsError(try c.checkNoPeerHasKey(keyA)) { e in
            XCTAssertEqual("\(e)", "config.toml:6: peer[0].public_key: is this node's own public key")
        }
    }

    func testSecretIsNotPrinted() throws {
        let c = try Config.parse("[node]\nprivate_key = \"\(nodeSecret)\"\naddress = \"10.77.0.1/24\"")
        XCTAssertFalse("\(c.node)".contains(nodeSecret))
        XCTAssertFalse(String(reflecting: c.node).contains(nodeSecret))
        XCTAssertFalse("\(c)".contains(nodeSecret))
    }

    // MARK: Files

    func testLoadPrivateKeyFromFile() throws {
        let dir = try TempDir()
        let keyPath = dir.path + "/ws0.key"
        try dir.write("ws0.key", "  \(nodeSecret)\n", mode: 0o600)
        let c = try Config.parse("[node]\nprivate_key_file = \"\(keyPath)\"\naddress = \"10.77.0.1/24\"", path: "ws.toml")
        var warnings: [String] = []
        XCTAssertEqual(try c.node.loadPrivateKey { warnings.append($0) }, nodeSecret)
        XCTAssertEqual(warnings, [])

        // Readable by others: refused, as ssh refuses such a key (wg only warns).
        for mode in [0o644, 0o640, 0o604] {
            try dir.write("ws0.key", nodeSecret, mode: mode)
            XCTAssertThrowsError(try c.node.loadPrivateKey { warnings.append($0) }) { e in
                XCTAssertEqual("\(e)", "ws.toml:2: node.private_key_file: key file \"\(keyPath)\" is accessible by group or others (mode \(String(mode, radix: 8))): refused; run chmod 600 on it")
            }
        }
        XCTAssertEqual(warnings, [])

        try dir.write("ws0.key", "not a key\n", mode: 0o600)
        XCTAssertThrowsError(try c.node.loadPrivateKey()) { e in
            XCTAssertEqual("\(e)", "ws.toml:2: node.private_key_file: \"\(keyPath)\" does not hold a base64 key of 32 bytes (as printed by wsctl genkey)")
        }
        try FileManager.default.removeItem(atPath: keyPath)
        XCTAssertThrowsError(try c.node.loadPrivateKey()) { e in
            XCTAssertEqual("\(e)", "ws.toml:2: node.private_key_file: cannot read \"\(keyPath)\": No such file or directory")
        }
        try FileManager.default.createDirectory(atPath: keyPath, withIntermediateDirectories: false)
        XCTAssertThrowsError(try c.node.loadPrivateKey()) { e in
            XCTAssertEqual("\(e)", "ws.toml:2: node.private_key_file: cannot read \"\(keyPath)\": not a regular file")
        }
        let inline = try Config.parse("[node]\nprivate_key = \"\(nodeSecret)\"\naddress = \"10.77.0.1/24\"")
        XCTAssertEqual(try inline.node.loadPrivateKey(), nodeSecret)
    }

    func testLoadConfigFile() throws {
        let dir = try TempDir()
        XCTAssertThrowsError(try Config.load(path: dir.path + "/missing.toml")) { e in
            XCTAssertEqual("\(e)", "\(dir.path)/missing.toml: cannot read: No such file or directory")
        }
        try dir.write("ws0.toml", "[node]\naddress = \"10.77.0.1/24\"\nprivate_key = \"\(nodeSecret)\"\n", mode: 0o644)
        XCTAssertThrowsError(try Config.load(path: dir.path + "/ws0.toml")) { e in
            XCTAssertEqual("\(e)", "\(dir.path)/ws0.toml:3: node.private_key: a secret key in a file others can read (mode 644): refused; chmod 600 it or use private_key_file")
        }
        try dir.write("ws0.toml", "[node]\naddress = \"10.77.0.1/24\"\nprivate_key = \"\(nodeSecret)\"\n", mode: 0o600)
        XCTAssertEqual(try Config.load(path: dir.path + "/ws0.toml").warnings, [])
        // A config others may write decides who is a member: refused.
        try dir.write("open.toml", "[node]\naddress = \"10.77.0.1/24\"\nprivate_key_file = \"/k\"\n", mode: 0o664)
        XCTAssertThrowsError(try Config.load(path: dir.path + "/open.toml")) { e in
            XCTAssertEqual("\(e)", "\(dir.path)/open.toml: is writable by group or others (mode 664), who could add a member or an anchor: refused; run chmod go-w on it")
        }
        try dir.write("bad.toml", "[node]\naddress = \"10.77.0.1/99\"\nprivate_key_file = \"/k\"\n", mode: 0o600)
        XCTAssertThrowsError(try Config.load(path: dir.path + "/bad.toml")) { e in
            XCTAssertEqual((e as? ConfigError)?.line, 2)
            XCTAssertEqual((e as? ConfigError)?.path, dir.path + "/bad.toml")
        }
    }

    // MARK: Base64 keys

    func testKeyText() {
        XCTAssertEqual(KeyText.decode(keyA), Array(repeating: 1, count: 32))
        XCTAssertEqual(KeyText.decode(nodeSecret), Array(0..<32))
        XCTAssertNil(KeyText.decode(String(keyA.dropLast())))            // no padding
        XCTAssertNil(KeyText.decode(keyA + "="))                          // too long
        XCTAssertNil(KeyText.decode("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQF="))  // unused bits set
        XCTAssertNil(KeyText.decode("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ-="))  // base64url
        XCTAssertNil(KeyText.decode(" AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"))
    }
}

/// Where each field is written, for documents that try to fool a line scanner.
final class SourceLinesTests: XCTestCase {
    func testStringsCommentsAndArrays() {
        let text = """
            # [[peer]] in a comment is not a table
            [ node ]
            "private_key_file" = "/k # not a comment"
            address = '10.77.0.1/24'   # = not a key
            note = \"\"\"
            [[peer]]
            name = "fake"
            \"\"\"
            raw = '''
            [[peer]]'''

            [[peer]]
            name = "a"
            address = [ "10.77.0.10/32", # comment "with quote
              'fd00::/64',
              [1, [2]], { x = 1 },
              "10.0.0.0/8" ]
            inline = { a = 1, b.c = "}" }
            [[ peer ]]
            name = "b"
            [peer.sub]
            k = 1
            """
        let s = SourceLines(text)
        XCTAssertEqual(s.line(of: "node"), 2)
        XCTAssertEqual(s.line(of: "node.private_key_file"), 3)
        XCTAssertEqual(s.line(of: "node.address"), 4)
        XCTAssertEqual(s.line(of: "node.note"), 5)
        XCTAssertEqual(s.line(of: "node.raw"), 9)
        XCTAssertEqual(s.line(of: "peer"), 12)
        XCTAssertEqual(s.line(of: "peer[0]"), 12)
        XCTAssertEqual(s.line(of: "peer[0].name"), 13)
        XCTAssertEqual(s.line(of: "peer[0].address"), 14)
        XCTAssertEqual(s.line(of: "peer[0].address[0]"), 14)
        XCTAssertEqual(s.line(of: "peer[0].address[1]"), 15)
        XCTAssertEqual(s.line(of: "peer[0].address[2]"), 16)
        XCTAssertEqual(s.line(of: "peer[0].address[3]"), 16)
        XCTAssertEqual(s.line(of: "peer[0].address[4]"), 17)
        XCTAssertEqual(s.line(of: "peer[0].inline.b.c"), 18)
        XCTAssertEqual(s.line(of: "peer[1]"), 19)
        XCTAssertEqual(s.line(of: "peer[1].name"), 20)
        XCTAssertEqual(s.line(of: "peer[1].sub"), 21)
        XCTAssertEqual(s.line(of: "peer[1].sub.k"), 22)
        // Unwritten fields fall back to the closest written parent.
        XCTAssertEqual(s.line(of: "peer[1].public_key"), 19)
        XCTAssertEqual(s.line(of: "peer[0].address[9]"), 14)
        XCTAssertNil(s.line(of: "gossip"))
        XCTAssertEqual(s.line(of: "peer[5].name"), 12)
    }

    func testNeverHangsOnGarbage() {
        for text in ["[", "[[", "\"", "a = [", "a = {", "a = \"\"\"", "= = =", "]]]", "a.b.", "x = [1,,]\n}", "\u{FEFF}a = 1"] {
            _ = SourceLines(text).line(of: "a")
        }
        XCTAssertEqual(SourceLines("\u{FEFF}a = 1\nb = 2").line(of: "b"), 2)
    }
}

/// CIDR parsing and the two questions routing asks of it, from tables.
final class CIDRTests: XCTestCase {
    func testParse() {
        // text, expected description (nil: rejected)
        let table: [(String, String?)] = [
            ("10.77.0.1/24", "10.77.0.1/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("255.255.255.255/32", "255.255.255.255/32"),
            ("192.168.1.0/24", "192.168.1.0/24"),
            ("fd00:77::1/64", "fd00:77::1/64"),
            ("FD00:0077:0000::/48", "fd00:77::/48"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.1/128", "::ffff:a00:1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("10.77.0.1", nil),              // prefix length required
            ("10.77.0.300/32", nil),
            ("10.77.0/24", nil),
            ("010.77.0.1/24", nil),          // octal to inet_aton
            ("10.77.0.1/33", nil),
            ("10.77.0.1/-1", nil),
            ("10.77.0.1/+24", nil),
            ("10.77.0.1/024", nil),
            ("10.77.0.1/", nil),
            ("10.77.0.1/24/1", nil),
            ("fd00::/129", nil),
            ("fd00::1%eth0/64", nil),
            ("fd00:::1/64", nil),
            ("1:2:3:4:5:6:7:8:9/64", nil),
            ("/24", nil),
            ("", nil),
            (" 10.0.0.0/8", nil),
            ("host.example/32", nil),
        ]
        for (text, expected) in table {
            XCTAssertEqual(CIDR(text)?.description, expected, text)
        }
    }

    func testParseReasons() {
        XCTAssertEqual(CIDR.parse("10.0.0.1"), .failure(.noPrefixLength))
        XCTAssertEqual(CIDR.parse("10.0.0.256/8"), .failure(.badAddress("10.0.0.256")))
        XCTAssertEqual(CIDR.parse("10.0.0.0/40"), .failure(.badPrefixLength("40", .v4)))
        XCTAssertEqual(CIDR.parse("::/200"), .failure(.badPrefixLength("200", .v6)))
    }

    func testNetwork() {
        let table: [(String, String, Bool)] = [
            ("10.77.0.1/24", "10.77.0.0/24", false),
            ("10.77.0.0/24", "10.77.0.0/24", true),
            ("10.77.0.255/31", "10.77.0.254/31", false),
            ("10.77.0.1/32", "10.77.0.1/32", true),
            ("10.77.0.1/0", "0.0.0.0/0", false),
            ("fd00:77::1/64", "fd00:77::/64", false),
            ("fd00:77:0:0:ffff::/65", "fd00:77:0:0:8000::/65", false),
            ("fd00::ffff/127", "fd00::fffe/127", false),
            ("fd00::ffff/128", "fd00::ffff/128", true),
        ]
        for (text, network, isNetwork) in table {
            guard let c = CIDR(text) else { XCTFail(text); continue }
            XCTAssertEqual(c.network.description, network, text)
            XCTAssertEqual(c.isNetworkAddress, isNetwork, text)
        }
    }

    func testContainsAddress() {
        // prefix, address, family of the address, inside?
        let table: [(String, String, Bool)] = [
            ("10.77.0.0/24", "10.77.0.0", true),
            ("10.77.0.0/24", "10.77.0.255", true),
            ("10.77.0.0/24", "10.77.1.0", false),
            ("10.77.0.0/24", "10.76.255.255", false),
            ("10.77.0.1/24", "10.77.0.200", true),       // host bits of the prefix do not matter
            ("10.77.0.10/32", "10.77.0.10", true),
            ("10.77.0.10/32", "10.77.0.11", false),
            ("0.0.0.0/0", "203.0.113.7", true),
            ("128.0.0.0/1", "127.255.255.255", false),
            ("128.0.0.0/1", "128.0.0.0", true),
            ("fd00:77::/64", "fd00:77::1", true),
            ("fd00:77::/64", "fd00:77:0:0:ffff:ffff:ffff:ffff", true),
            ("fd00:77::/64", "fd00:77:0:1::", false),
            ("fd00:77::/96", "fd00:77::1:0:0", false),    // the bit is in the low half
            ("fd00:77::/96", "fd00:77::ffff:ffff", true),
            ("fd00::1/128", "fd00::1", true),
            ("fd00::1/128", "fd00::2", false),
            ("::/0", "2001:db8::1", true),
            ("fe80::/10", "febf::1", true),
            ("fe80::/10", "fec0::1", false),
            // Same leading bytes, other family: never inside.
            ("10.0.0.0/8", "a00:1::", false),
            ("a00::/8", "10.0.0.1", false),
            ("::/0", "10.0.0.1", false),
            ("0.0.0.0/0", "::1", false),
        ]
        for (prefix, text, inside) in table {
            guard let c = CIDR(prefix) else { XCTFail(prefix); continue }
            let (family, address): (Endpoint.Family, IPAddressBytes?) =
                text.contains(":") ? (.v6, IPAddressBytes(v6: text)) : (.v4, IPAddressBytes(v4: text))
            guard let address else { XCTFail(text); continue }
            XCTAssertEqual(c.contains(address, family: family), inside, "\(prefix) ∋ \(text)")
        }
    }

    func testOverlapsAndContainsPrefix() {
        // a, b, overlap?, a contains b?
        let table: [(String, String, Bool, Bool)] = [
            ("10.0.0.0/8", "10.77.0.0/24", true, true),
            ("10.77.0.0/24", "10.0.0.0/8", true, false),
            ("10.77.0.0/24", "10.77.1.0/24", false, false),
            ("10.77.0.0/24", "10.77.0.0/24", true, true),
            ("10.77.0.10/32", "10.77.0.11/32", false, false),
            ("10.77.0.0/23", "10.77.1.128/25", true, true),
            ("0.0.0.0/0", "192.0.2.0/24", true, true),
            ("fd00:77::/64", "fd00:77::8000/113", true, true),
            ("fd00:77::/64", "fd00:78::/64", false, false),
            ("fd00:77::/127", "fd00:77::1/128", true, true),
            ("fd00:77::2/127", "fd00:77::1/128", false, false),
            ("::/0", "0.0.0.0/0", false, false),
            ("10.0.0.0/8", "a00::/8", false, false),
        ]
        for (a, b, overlap, contains) in table {
            guard let x = CIDR(a), let y = CIDR(b) else { XCTFail("\(a) \(b)"); continue }
            XCTAssertEqual(x.overlaps(y), overlap, "\(a) overlaps \(b)")
            XCTAssertEqual(y.overlaps(x), overlap, "\(b) overlaps \(a)")
            XCTAssertEqual(x.contains(y), contains, "\(a) contains \(b)")
        }
    }

    func testMemberwiseInit() {
        XCTAssertNil(CIDR(family: .v4, address: IPAddressBytes(v4: (10, 0, 0, 0)), prefixLength: 33))
        XCTAssertNil(CIDR(family: .v6, address: IPAddressBytes(), prefixLength: -1))
        let c = CIDR(family: .v4, address: IPAddressBytes(v4: (10, 0, 0, 0)), prefixLength: 8)
        XCTAssertEqual(c, CIDR("10.0.0.0/8"))
        XCTAssertEqual(c?.addressText, "10.0.0.0")
        XCTAssertEqual(CIDR.maxPrefixLength(.v4), 32)
        XCTAssertEqual(CIDR.maxPrefixLength(.v6), 128)
    }
}

// MARK: - Helpers

/// Asserts that parsing fails with exactly this line, field and (when given) message.
private func XCTAssertError(
    _ text: String, line: Int?, field: String, message: String?, file: StaticString = #filePath, lineNumber: UInt = #line
) {
    do {
        let c = try Config.parse(text)
        XCTFail("parsed: \(c.peers.map(\.name))", file: file, line: lineNumber)
    } catch {
        XCTAssertEqual(error.line, line, "line of: \(error)", file: file, line: lineNumber)
        XCTAssertEqual(error.field, field, "field of: \(error)", file: file, line: lineNumber)
        if let message { XCTAssertEqual(error.message, message, file: file, line: lineNumber) }
        XCTAssertEqual(error.path, "config.toml", file: file, line: lineNumber)
    }
}

private struct TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "ws-config-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ text: String, mode: Int) throws {
        let p = path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: p))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: p)
    }
}

/// Config keeps its own copy of the relay budget's default (Config does not
/// import Protocol); this holds the two equal.
final class ConfigDefaultsTests: XCTestCase {
    func testRelayRateDefaultIsProtocols() {
        XCTAssertEqual(NodeConfig.defaultRelayRateMbit, ConnectivityTimings.defaultRelayRateMbit)
    }
}

// MARK: - WireGuard peers (issue 16)

extension ConfigTests {
    func testWireGuardPeers() throws {
        let text = nodeTable + """

            [[peer]]
            name = "router"
            wireguard = true
            public_key = "\(keyA)"
            preshared_key_file = "/etc/whalescale/router.psk"
            address = "10.77.0.20/32"
            endpoint = "198.51.100.7:51820"

            [[peer]]
            name = "laptop"
            public_key = "\(keyB)"
            address = "10.77.0.21/32"
            """
        let c = try Config.parse(text)
        XCTAssertTrue(c.peers[0].wireGuard)
        XCTAssertEqual(c.peers[0].presharedKeyFile, "/etc/whalescale/router.psk")
        XCTAssertFalse(c.peers[1].wireGuard)
        XCTAssertNil(c.peers[1].presharedKeyFile)

        let peer = "\n[[peer]]\nname = \"r\"\npublic_key = \"\(keyA)\"\naddress = \"10.77.0.20/32\"\n"
        XCTAssertError(nodeTable + peer + "preshared_key_file = \"/p\"", line: 8, field: "peer[0].preshared_key_file",
                       message: "is for WireGuard peers only (set wireguard = true)")
        XCTAssertError(nodeTable + peer + "wireguard = true\npreshared_key_file = \"p\"", line: 9,
                       field: "peer[0].preshared_key_file", message: "\"p\" is not an absolute path")
        XCTAssertError(nodeTable + peer + "wireguard = true\nanchor = true", line: 9, field: "peer[0].anchor",
                       message: "a WireGuard peer cannot be an anchor (it speaks only WireGuard's protocol)")
    }

    func testPresharedKeyFileMustBeOwnerOnly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wspsk-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("psk").path
        try (keyC + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        let text = nodeTable + "\n[[peer]]\nname = \"r\"\nwireguard = true\npublic_key = \"\(keyA)\"\naddress = \"10.77.0.20/32\"\npreshared_key_file = \"\(path)\"\n"
        let c = try Config.parse(text)
        chmod(path, 0o600)
        XCTAssertEqual(try c.loadPresharedKey(peer: 0), keyC)
        chmod(path, 0o644)
        XCTAssertThrowsError(try c.loadPresharedKey(peer: 0)) {
            XCTAssertTrue(String(describing: $0).contains("accessible by group or others"), "\($0)")
        }
        try "not a key".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        XCTAssertThrowsError(try c.loadPresharedKey(peer: 0))
    }
}
