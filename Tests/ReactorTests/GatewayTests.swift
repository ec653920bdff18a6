import XCTest
@testable import Reactor

/// The default gateway as the port-mapping worker reads it from /proc/net/route.
final class GatewayTests: XCTestCase {
    func testDefaultRouteLowestMetricWithGatewayFlag() {
        let table = """
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            eth0\t0003A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            wlan0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
            eth0\t00000000\t0103A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
            tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0
            """
        let gw = DefaultGateway.parseRouteTable(table)
        XCTAssertEqual(gw.map { [$0.addr.0, $0.addr.1, $0.addr.2, $0.addr.3] }, [192, 168, 3, 1])
        XCTAssertNil(DefaultGateway.parseRouteTable("Iface\tDestination\n"), "no default route")
        XCTAssertNil(DefaultGateway.parseRouteTable(""))
    }
}
