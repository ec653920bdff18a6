import CReactor
import XCTest

@testable import Reactor

/// UDP echo through the reactor over loopback, for each backend: 4 flows,
/// 12,000 datagrams in batches, none lost, each flow's order kept.
final class EchoTests: XCTestCase {
    func testEchoMmsg() throws { try runEcho(server: .mmsg, client: .mmsg) }

    func testEchoUring() throws {
        try XCTSkipUnless(DatagramBackend.uringSupported, "io_uring multishot recvmsg not supported by this kernel")
        try runEcho(server: .uring, client: .uring)
    }

    func testEchoMixedBackends() throws {
        try XCTSkipUnless(DatagramBackend.uringSupported, "io_uring multishot recvmsg not supported by this kernel")
        try runEcho(server: .uring, client: .mmsg)
    }

    func runEcho(server: DatagramBackend, client: DatagramBackend, flows: Int = 4, perFlow: Int = 3000) throws {
        let r = try Reactor()
        var errors: [SyscallError] = []
        r.onError = { errors.append($0) }
        let echo = EchoServer()
        var lo = CReactor_endpoint()
        XCTAssertEqual(CReactor_endpoint_parse("127.0.0.1", 0, &lo), 0)
        let sfd = try UDPSocket.open(bind: lo).fd
        let s = try DatagramSocket(reactor: r, fd: sfd, backend: server, handler: echo)
        let serverEP = s.localEndpoint

        var clients: [FlowClient] = []
        for f in 0..<flows {
            let c = FlowClient(flow: UInt32(f), total: perFlow, to: serverEP) { r.stop() }
            let cfd = try UDPSocket.open(bind: lo).fd
            c.socket = try DatagramSocket(reactor: r, fd: cfd, backend: client, handler: c)
            clients.append(c)
        }
        var remaining = flows
        for c in clients {
            c.onDone = {
                remaining -= 1
                if remaining == 0 { r.stop() }
            }
            c.pump()
        }
        r.addTimer(after: 20_000_000_000) {
            XCTFail("echo did not finish in 20 s")
            r.stop()
        }
        r.run()
        for c in clients {
            XCTAssertEqual(c.received, perFlow, "flow \(c.flow): all echoed")
            XCTAssertEqual(c.outOfOrder, 0, "flow \(c.flow): order kept")
        }
        XCTAssertEqual(echo.echoed, flows * perFlow)
        XCTAssertGreaterThan(s.counters.batchesIn, 0)
        XCTAssertLessThan(s.counters.batchesIn, flows * perFlow, "received in batches")
        XCTAssertEqual(errors, [])
        s.close()
        for c in clients { c.socket?.close() }
    }
}

/// Sends every datagram it receives straight back, in place, as one batch.
final class EchoServer: DatagramHandler {
    var echoed = 0
    private var backlog = 0
    func received(_ batch: DatagramBatch, on socket: DatagramSocket) {
        // Same views, same buffers: the peer address is already the destination.
        let n = socket.send(batch)
        echoed += n
        backlog += batch.count - n
    }
}

/// One flow: sequence-numbered datagrams with a window so loopback buffers never overflow.
final class FlowClient: DatagramHandler {
    let flow: UInt32
    let total: Int
    let to: CReactor_endpoint
    var socket: DatagramSocket?
    var sent = 0
    var received = 0
    var outOfOrder = 0
    var onDone: () -> Void
    private let window = 256
    private let out: UnsafeMutablePointer<CReactor_dgram>
    private let bytes: UnsafeMutableRawPointer
    private static let size = 200
    private static let batch = 32

    init(flow: UInt32, total: Int, to: CReactor_endpoint, onDone: @escaping () -> Void) {
        self.flow = flow
        self.total = total
        self.to = to
        self.onDone = onDone
        out = .allocate(capacity: Self.batch)
        bytes = .allocate(byteCount: Self.batch * Self.size, alignment: 16)
    }

    deinit {
        out.deallocate()
        bytes.deallocate()
    }

    func pump() {
        guard let socket else { return }
        while sent < total && sent - received < window {
            let n = min(Self.batch, total - sent, window - (sent - received))
            for i in 0..<n {
                let p = bytes + i * Self.size
                p.storeBytes(of: flow.littleEndian, as: UInt32.self)
                p.storeBytes(of: UInt32(sent + i).littleEndian, toByteOffset: 4, as: UInt32.self)
                out[i] = CReactor_dgram()
                out[i].data = p.assumingMemoryBound(to: UInt8.self)
                out[i].len = UInt32(Self.size)
                out[i].peer = to
            }
            let k = socket.send(DatagramBatch(base: out, count: n))
            sent += k
            if k < n { return }  // writable() resumes
        }
    }

    func received(_ batch: DatagramBatch, on socket: DatagramSocket) {
        for i in 0..<batch.count {
            let d = batch[i].pointee
            guard d.len == UInt32(Self.size) else { continue }
            let raw = UnsafeRawPointer(d.data!)
            let f = UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self))
            let seq = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            guard f == flow else { continue }
            if seq != UInt32(received) { outOfOrder += 1 }
            received += 1
        }
        if received == total { onDone() } else { pump() }
    }

    func writable(_ socket: DatagramSocket) { pump() }
}
