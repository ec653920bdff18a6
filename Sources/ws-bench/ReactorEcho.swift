// UDP echo packets per second through the reactor: recvmmsg/sendmmsg, io_uring,
// and a one-datagram-per-syscall baseline, interleaved in one run.
//
//   client thread (reactor, mmsg, window of W datagrams)  ⇄  loopback  ⇄  server thread (backend under test)
import ArgumentParser
import CReactor
import Foundation
import Reactor

struct ReactorEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reactor-echo",
        abstract: "UDP echo pps through the reactor per backend, with ratios to one-datagram-per-syscall.")

    @Option(help: "Seconds per measurement.") var seconds: Double = 2
    @Option(help: "Rounds (backends interleaved each round); the table shows min/median/max.") var rounds: Int = 3
    @Option(help: "Datagram payload bytes.") var size: Int = 64
    @Option(help: "Datagrams in flight.") var window: Int = 512

    func run() throws {
        let kinds: [EchoKind] = DatagramBackend.uringSupported ? [.single, .mmsg, .uring] : [.single, .mmsg]
        var results: [EchoKind: [Double]] = [:]
        var perCPU: [EchoKind: [Double]] = [:]
        var batch: [EchoKind: [Double]] = [:]
        var mallocs: [EchoKind: [Double]] = [:]
        for round in 0..<rounds {
            for k in kinds {
                let m = try measure(k)
                results[k, default: []].append(m.pps)
                perCPU[k, default: []].append(m.perCPU)
                batch[k, default: []].append(m.batch)
                mallocs[k, default: []].append(m.mallocs)
                FileHandle.standardError.write("round \(round + 1) \(k.rawValue): \(Int(m.pps)) pps, \(Int(m.perCPU)) per server CPU-second\n".data(using: .utf8)!)
            }
        }
        let base = median(results[.single]!)
        let baseCPU = median(perCPU[.single]!)
        print("UDP echo through the reactor, \(size)-byte datagrams, window \(window), \(rounds)×\(seconds)s per backend, loopback, 1 server thread")
        print("pps: echoed datagrams per second at the client (the client, also one thread, is often the limit on 2 cores);")
        print("per CPU-s: datagrams the server echoed per second of its own thread's CPU time (its efficiency).")
        print("")
        let counted = MallocCounter.count != nil
        print(counted ? "mallocs: allocations in the whole process (server and client loops) per echoed datagram."
                      : "mallocs: not counted (run through perf/reactor-echo, which preloads perf/lib/malloccount.so).")
        print("")
        print("| server backend | pps min | pps median | pps max | pps ratio | per CPU-s median | per CPU-s ratio | datagrams per batch | mallocs per datagram |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in kinds {
            let v = results[k]!.sorted()
            let c = median(perCPU[k]!)
            print("| \(k.label) | \(Int(v.first!)) | \(Int(median(v))) | \(Int(v.last!)) | \(String(format: "%.2f×", median(v) / base)) | \(Int(c)) | \(String(format: "%.2f×", c / baseCPU)) | \(String(format: "%.1f", median(batch[k]!))) | \(counted ? String(format: "%.4f", mallocs[k]!.max()!) : "-") |")
        }
        if !DatagramBackend.uringSupported { print("(io_uring multishot recvmsg not supported here: skipped)") }
    }

    func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func measure(_ kind: EchoKind) throws -> (pps: Double, perCPU: Double, batch: Double, mallocs: Double) {
        final class Box: @unchecked Sendable {
            var serverEP = CReactor_endpoint()
            var stop: StopHandle?
            var mailbox: Mailbox?
            var error: String?
            var count: () -> Int = { 0 }
            var batches: () -> Int = { 0 }
            var b0 = 0, b1 = 0
            var m0: UInt64 = 0, m1: UInt64 = 0
            var cpu0: UInt64 = 0, cpu1: UInt64 = 0, n0 = 0, n1 = 0
        }
        let box = Box()
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let server = Thread {
            defer { done.signal() }
            do {
                let r = try Reactor()
                var lo = CReactor_endpoint()
                _ = CReactor_endpoint_parse("127.0.0.1", 0, &lo)
                let fd = try UDPSocket.open(bind: lo).fd
                box.serverEP = UDPSocket.localEndpoint(fd)
                box.stop = r.stopHandle
                box.mailbox = r.makeMailbox()
                let echo = Echo()
                var keep: AnyObject?
                switch kind {
                case .single:
                    let single = try SingleEcho(reactor: r, fd: fd)
                    box.count = { single.count }
                    keep = single
                case .mmsg, .uring:
                    let sock = try DatagramSocket(reactor: r, fd: fd, backend: kind == .mmsg ? .mmsg : .uring, handler: echo)
                    keep = sock
                    box.count = { echo.count }
                    box.batches = { sock.counters.batchesIn }
                }
                ready.signal()
                r.run()
                withExtendedLifetime((keep, echo)) {}
            } catch {
                box.error = "\(error)"
                ready.signal()
            }
        }
        server.start()
        ready.wait()
        if let e = box.error { throw ValidationError(e) }
        let r = try Reactor()
        var lo = CReactor_endpoint()
        _ = CReactor_endpoint_parse("127.0.0.1", 0, &lo)
        let client = LoadClient(target: box.serverEP, size: size, window: window)
        let s = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: lo).fd, backend: .mmsg, handler: client)
        client.socket = s
        client.pump()
        // Warm up, then count over the measured span.
        let mailbox = box.mailbox!
        r.addTimer(after: 200_000_000) {
            client.received = 0
            client.start = Reactor.now()
            mailbox.post { box.cpu0 = threadCPU(); box.n0 = box.count(); box.b0 = box.batches(); box.m0 = MallocCounter.count ?? 0 }
        }
        let marked = DispatchSemaphore(value: 0)
        r.addTimer(after: 200_000_000 + UInt64(seconds * 1e9)) {
            mailbox.post {
                box.cpu1 = threadCPU()
                box.n1 = box.count()
                box.b1 = box.batches()
                box.m1 = MallocCounter.count ?? 0
                marked.signal()
            }
            r.stop()
        }
        // Lost datagrams (socket buffer overflow) would stall the window: refill it periodically.
        func refill() {
            client.inflight = min(client.inflight, client.window / 2)
            client.pump()
            r.addTimer(after: 50_000_000) { refill() }
        }
        r.addTimer(after: 50_000_000) { refill() }
        r.run()
        let elapsed = Double(Reactor.now() - client.start) / 1e9
        marked.wait()
        box.stop?.stop()
        done.wait()
        s.close()
        let cpu = Double(box.cpu1 - box.cpu0) / 1e9
        let batches = box.b1 - box.b0
        let echoed = max(1, box.n1 - box.n0)
        return (Double(client.received) / elapsed, Double(box.n1 - box.n0) / max(cpu, 1e-9),
                batches > 0 ? Double(box.n1 - box.n0) / Double(batches) : 1,
                Double(box.m1 &- box.m0) / Double(echoed))
    }
}

enum EchoKind: String, CaseIterable {
    case single, mmsg, uring
    var label: String {
        switch self {
        case .single: return "one datagram per syscall (recvfrom/sendto)"
        case .mmsg: return "recvmmsg/sendmmsg"
        case .uring: return "io_uring multishot recvmsg + batched sendmsg"
        }
    }
}

final class Echo: DatagramHandler {
    var count = 0
    func received(_ batch: DatagramBatch, on socket: DatagramSocket) { count += socket.send(batch) }
}

/// CPU time of the calling thread, ns.
func threadCPU() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The baseline: epoll readiness, then recvfrom/sendto one datagram at a time.
final class SingleEcho {
    let fd: Int32
    let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: 2048)
    var reg: Registration?
    var count = 0
    init(reactor: Reactor, fd: Int32) throws {
        self.fd = fd
        reg = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.drain() }
    }
    func drain() {
        var d = CReactor_dgram()
        d.data = buf
        d.cap = 2048
        // Bounded like DatagramSocket.drain (level-triggered epoll calls back), so the loop stays fair.
        for _ in 0..<1024 {
            guard CReactor_recvfrom(fd, &d) >= 0 else { return }
            if CReactor_sendto(fd, &d) >= 0 { count += 1 }
        }
    }
}

final class LoadClient: DatagramHandler {
    let target: CReactor_endpoint
    let size: Int
    let window: Int
    var socket: DatagramSocket?
    var inflight = 0
    var received = 0
    var start = Reactor.now()
    let views = UnsafeMutablePointer<CReactor_dgram>.allocate(capacity: 64)
    let bytes: UnsafeMutableRawPointer

    init(target: CReactor_endpoint, size: Int, window: Int) {
        self.target = target
        self.size = size
        self.window = window
        bytes = .allocate(byteCount: max(size, 16), alignment: 16)
        for i in 0..<64 {
            views[i] = CReactor_dgram()
            views[i].data = bytes.assumingMemoryBound(to: UInt8.self)
            views[i].len = UInt32(size)
            views[i].peer = target
        }
    }

    func pump() {
        guard let socket else { return }
        while inflight < window {
            let n = min(64, window - inflight)
            let k = socket.send(DatagramBatch(base: views, count: n))
            inflight += k
            if k < n { return }
        }
    }

    func received(_ batch: DatagramBatch, on socket: DatagramSocket) {
        received += batch.count
        inflight -= min(inflight, batch.count)
        pump()
    }

    func writable(_ socket: DatagramSocket) { pump() }
}
