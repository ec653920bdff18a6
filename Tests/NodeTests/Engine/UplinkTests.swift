import XCTest

@testable import Wire
@testable import Engine

/// `[node] uplinks` and the default "every interface with a route to the
/// outside", from the kernel's route tables as text (Uplinks.swift).
final class UplinkTests: XCTestCase {
    // A laptop: Wi-Fi with the preferred default route (metric 600), a 5G modem with a
    // worse one (700, point-to-point: no gateway), a docker bridge (on-link only), a
    // VPN-ish tunnel ws0, and a lab interface reaching 198.18.1.0/24 via a gateway.
    // Addresses as the kernel prints them on a little-endian host.
    static let route = """
        Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
        wwan0\t00000000\t00000000\t0001\t0\t0\t700\t00000000\t0\t0\t0
        wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
        docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
        ws0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
        up0\t000112C6\t010012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
        bad line
        """
    // IPv6: a default route via wlan0's router, an on-link /64, loopback and an unreachable (reject) default on lo.
    static let ipv6Route = """
        20010db8000000010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001    wlan0
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000003 00000000 00000003    wlan0
        00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
        """

    var routes: [KernelRoute] { Uplinks.parseIPv4(Self.route) + Uplinks.parseIPv6(Self.ipv6Route) }

    func testParseIPv4() {
        let r = Uplinks.parseIPv4(Self.route)
        XCTAssertEqual(r.count, 6, "the header and the bad line are skipped")
        XCTAssertEqual(r[0], KernelRoute(family: .v4, destination: IPAddressBytes(v4: (0, 0, 0, 0)), prefixLength: 0,
                                         gateway: true, metric: 600, interface: "wlan0"))
        XCTAssertEqual(r[2].destination, IPAddressBytes(v4: (192, 168, 1, 0)))
        XCTAssertEqual(r[2].prefixLength, 24)
        XCTAssertFalse(r[1].gateway)
    }

    func testParseIPv6SkipsRejectRoutes() {
        let r = Uplinks.parseIPv6(Self.ipv6Route)
        XCTAssertEqual(r.map(\.interface), ["wlan0", "wlan0", "lo"], "the unreachable default on lo is a reject route")
        XCTAssertEqual(r[0].prefixLength, 64)
        XCTAssertEqual(r[0].destination, IPAddressBytes(v6: "2001:db8:0:1::"))
        XCTAssertTrue(r[1].isDefault && r[1].gateway)
    }

    func testOutsideIsEveryInterfaceWithADefaultOrGatewayRoute() {
        // wlan0 (default, metric 600) before wwan0 (700), then up0 (a gateway route, no default);
        // docker0 (on-link only), ws0 (the tunnel) and lo are not ways out.
        XCTAssertEqual(Uplinks.outside(routes, excluding: ["ws0"], limit: 8), ["wlan0", "wwan0", "up0"])
        XCTAssertEqual(Uplinks.outside(routes, excluding: ["ws0", "wlan0"], limit: 8), ["wwan0", "up0"])
        XCTAssertEqual(Uplinks.outside(routes, excluding: [], limit: 2), ["wlan0", "wwan0"])
        XCTAssertEqual(Uplinks.outside([], excluding: [], limit: 8), [])
    }

    func testResolvePrefersTheConfig() {
        XCTAssertEqual(Uplinks.resolve(configured: ["wwan0", "usb0"], routes: routes, tunnel: "ws0", limit: 8),
                       [Uplink(name: "wwan0", source: .config), Uplink(name: "usb0", source: .config)])
        XCTAssertEqual(Uplinks.resolve(configured: nil, routes: routes, tunnel: "ws0", limit: 8).map(\.name), ["wlan0", "wwan0", "up0"])
        XCTAssertEqual(Uplinks.resolve(configured: nil, routes: routes, tunnel: "ws0", limit: 8).first?.source, .routes)
    }

    /// Interfaces come and go: each keeps its index, a new one takes a hole.
    func testMergeKeepsIndices() {
        func u(_ n: String) -> Uplink { Uplink(name: n, source: .routes) }
        let start = Uplinks.merge([], [u("wlan0"), u("wwan0")])
        XCTAssertEqual(start, [u("wlan0"), u("wwan0")])
        // wlan0 goes away: wwan0 stays at 1, a hole at 0.
        let gone = Uplinks.merge(start, [u("wwan0")])
        XCTAssertEqual(gone, [nil, u("wwan0")])
        // usb0 appears: it takes the hole; wlan0 coming back goes to the end.
        let usb = Uplinks.merge(gone, [u("usb0"), u("wwan0")])
        XCTAssertEqual(usb, [u("usb0"), u("wwan0")])
        XCTAssertEqual(Uplinks.merge(usb, [u("wlan0"), u("wwan0"), u("usb0")]), [u("usb0"), u("wwan0"), u("wlan0")])
        // The last one going leaves no trailing hole; none left: empty.
        XCTAssertEqual(Uplinks.merge(usb, [u("usb0")]), [u("usb0")])
        XCTAssertEqual(Uplinks.merge(usb, []), [])
        // Unchanged: equal (the daemon logs only a change).
        XCTAssertEqual(Uplinks.merge(usb, [u("wwan0"), u("usb0")]), usb)
    }

    func testLookupTakesTheLongestPrefixThenTheLowestMetric() {
        func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> String? {
            Uplinks.lookup(routes, family: .v4, address: IPAddressBytes(v4: (a, b, c, d)))
        }
        XCTAssertEqual(v4(192, 168, 1, 20), "wlan0", "on-link /24")
        XCTAssertEqual(v4(198, 18, 1, 2), "up0", "the /24 via a gateway beats the defaults")
        XCTAssertEqual(v4(203, 0, 113, 10), "wlan0", "of the two defaults, the lower metric")
        XCTAssertEqual(v4(172, 17, 3, 4), "docker0")
        XCTAssertEqual(Uplinks.lookup(routes, family: .v6, address: IPAddressBytes(v6: "2001:db8:0:1::5")!), "wlan0")
        XCTAssertEqual(Uplinks.lookup(routes, family: .v6, address: IPAddressBytes(v6: "2001:db8:ffff::5")!), "wlan0", "the v6 default")
        XCTAssertEqual(Uplinks.lookup(routes, family: .v6, address: IPAddressBytes(v6: "::1")!), "lo")
        XCTAssertNil(Uplinks.lookup(Uplinks.parseIPv4(Self.route).filter { !$0.isDefault }, family: .v4,
                                    address: IPAddressBytes(v4: (8, 8, 8, 8))), "no route")
    }

    func testPrefixContainment() {
        let r = KernelRoute(family: .v6, destination: IPAddressBytes(v6: "2001:db8::")!, prefixLength: 96,
                            gateway: false, metric: 0, interface: "x")
        XCTAssertTrue(r.contains(IPAddressBytes(v6: "2001:db8::ffff:ffff")!))
        XCTAssertFalse(r.contains(IPAddressBytes(v6: "2001:db8::1:0:0")!))
        let all = KernelRoute(family: .v6, destination: IPAddressBytes(), prefixLength: 128, gateway: false, metric: 0, interface: "x")
        XCTAssertTrue(all.contains(IPAddressBytes()))
        XCTAssertFalse(all.contains(IPAddressBytes(v6: "::1")!))
    }
}
