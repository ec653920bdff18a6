// The baseline for perf/relay: a minimal UDP forwarder on the Reactor's
// DatagramSocket (recvmmsg/sendmmsg), and the load generator and sink that
// push datagrams through it. perf/relay puts the forwarder in an anchor's
// namespace and compares the packets per second it forwards with what the
// anchor's relay forwards in the same run.
//
//   ws-bench relay-baseline send    ──>  forward (anchor's namespace)  ──>  sink
//   --to ANCHOR:PORT                     --listen :PORT --to SINK           --punch ANCHOR:PORT
//
// forward: receives on one port and sends every datagram, unchanged, on to one
//          fixed destination: no parsing, no checks, no GRO/GSO, no IP_PKTINFO.
//          Datagrams the socket cannot take at once (EAGAIN) are dropped and counted.
// send:    datagrams of --size bytes to --to as fast as sendmmsg takes them
//          (or at --rate per second), for --seconds.
// sink:    counts what arrives; every second it sends one datagram to --punch
//          so that a NAT in front of it keeps a mapping the forwarder can reach.
//
// forward and sink write their cumulative counters to --stats FILE every
// --stats-ms (one line, replaced by rename): "mono_ns=... received=... ..."
// with CLOCK_MONOTONIC and the process's own CPU time taken at the same
// moment, so a reader computes exact rates from two samples.
import ArgumentParser
import CReactor
import Foundation
import Reactor

struct RelayBaseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-baseline",
        abstract: "A minimal recvmmsg/sendmmsg UDP forwarder, with a load generator and a sink (perf/relay).",
        subcommands: [Forward.self, Send.self, Sink.self])

    /// "IP:PORT" (IPv4, or [IPv6]:PORT) -> endpoint.
    static func endpoint(_ s: String) throws -> CReactor_endpoint {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else {
            throw ValidationError("'\(s)' is not IP:PORT")
        }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        var ep = CReactor_endpoint()
        guard CReactor_endpoint_parse(host, port, &ep) == 0 else { throw ValidationError("'\(s)' is not IP:PORT") }
        return ep
    }

    static func open(_ bind: CReactor_endpoint) throws -> Int32 {
        var o = UDPOptions()
        o.packetInfo = false
        return try UDPSocket.open(bind: bind, options: o).fd
    }

    static func processCPU() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Writes `line` to `path` atomically (a temporary file, then rename).
    static func writeStats(_ path: String, _ line: String) {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: (line + "\n").data(using: .utf8)) else { return }
        _ = rename(tmp, path)
    }

    /// One line on stderr, unbuffered (stdout is block-buffered in a log file).
    static func say(_ line: String) { FileHandle.standardError.write((line + "\n").data(using: .utf8)!) }

    static func every(_ r: Reactor, ms: Int, _ action: @escaping () -> Void) {
        func tick() {
            action()
            r.addTimer(after: UInt64(ms) * 1_000_000) { tick() }
        }
        tick()
    }

    struct Forward: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Receive on --listen, send every datagram on to --to; nothing else.")
        @Option(help: "Address to receive on, IP:PORT (IP may be empty: all addresses).") var listen: String
        @Option(help: "Fixed destination, IP:PORT.") var to: String
        @Option(help: "Datagrams per recvmmsg/sendmmsg batch.") var batch: Int = 64
        @Option(help: "File for the cumulative counters.") var stats: String?
        @Option(help: "Milliseconds between stats writes.") var statsMs: Int = 50

        final class Handler: DatagramHandler {
            var to = CReactor_endpoint()
            var dropped = 0
            func received(_ batch: DatagramBatch, on socket: DatagramSocket) {
                for i in 0..<batch.count { batch[i].pointee.peer = to }
                dropped += batch.count - socket.send(batch)
            }
        }

        func run() throws {
            let r = try Reactor()
            let h = Handler()
            h.to = try RelayBaseline.endpoint(to)
            let sock = try DatagramSocket(reactor: r, fd: try RelayBaseline.open(try RelayBaseline.endpoint(listen)),
                                          backend: .mmsg, batchSize: batch, bufferSize: 2048, headroom: 64, handler: h)
            if let stats {
                RelayBaseline.every(r, ms: statsMs) {
                    let c = sock.counters
                    RelayBaseline.writeStats(stats, "mono_ns=\(Reactor.now()) cpu_ns=\(RelayBaseline.processCPU()) received=\(c.received) forwarded=\(c.sent) dropped=\(h.dropped) refused=\(c.sendRefused) batches_in=\(c.batchesIn) batches_out=\(c.batchesOut)")
                }
            }
            RelayBaseline.say("relay-baseline forward: \(listen) -> \(to), batch \(batch)")
            r.run()
            withExtendedLifetime((sock, h)) {}
        }
    }

    struct Send: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send --size-byte datagrams to --to for --seconds, as fast as sendmmsg takes them (or at --rate).")
        @Option(help: "Destination, IP:PORT.") var to: String
        @Option(help: "Local address, IP:PORT.") var bind: String = "0.0.0.0:0"
        @Option(help: "UDP payload bytes.") var size: Int = 64
        @Option(help: "Seconds to send.") var seconds: Double = 10
        @Option(help: "Datagrams per second (0: as fast as possible).") var rate: Double = 0
        @Option(help: "Datagrams per sendmmsg.") var batch: Int = 64

        final class Idle: DatagramHandler {
            func received(_ batch: DatagramBatch, on socket: DatagramSocket) {}
        }

        func run() throws {
            guard size >= 1 && size <= 65000, batch >= 1 && batch <= 256 else { throw ValidationError("bad --size or --batch") }
            let r = try Reactor()
            let idle = Idle()
            let sock = try DatagramSocket(reactor: r, fd: try RelayBaseline.open(try RelayBaseline.endpoint(bind)),
                                          backend: .mmsg, handler: idle)
            let views = UnsafeMutablePointer<CReactor_dgram>.allocate(capacity: batch)
            let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
            bytes.initialize(repeating: 0, count: size)
            let target = try RelayBaseline.endpoint(to)
            for i in 0..<batch {
                views[i] = CReactor_dgram()
                views[i].data = bytes
                views[i].len = UInt32(size)
                views[i].peer = target
            }
            let start = Reactor.now()
            let end = start + UInt64(seconds * 1e9)
            var sent = 0
            while true {
                let now = Reactor.now()
                if now >= end { break }
                var n = batch
                if rate > 0 {
                    let due = Int(Double(now - start) / 1e9 * rate) - sent
                    if due <= 0 { usleep(200); continue }
                    n = min(n, due)
                }
                let k = sock.send(DatagramBatch(base: views, count: n))
                sent += k
                if k < n { r.runOnce(timeoutMs: 1) }  // the socket is full: wait until it drains
            }
            let el = Double(Reactor.now() - start) / 1e9
            print("relay-baseline send: \(sent) datagrams of \(size) bytes in \(String(format: "%.2f", el)) s (\(Int(Double(sent) / el)) per second), refused \(sock.counters.sendRefused)")
            sock.close()
        }
    }

    struct Sink: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count datagrams arriving on --bind; send one datagram a second to --punch (keeps a NAT mapping open).")
        @Option(help: "Local address, IP:PORT.") var bind: String
        @Option(help: "Where to send one datagram a second (the forwarder).") var punch: String?
        @Option(help: "File for the cumulative counters.") var stats: String?
        @Option(help: "Milliseconds between stats writes.") var statsMs: Int = 50

        final class Counter: DatagramHandler {
            var bytes = 0
            func received(_ batch: DatagramBatch, on socket: DatagramSocket) {
                for i in 0..<batch.count { bytes += Int(batch[i].pointee.len) }
            }
        }

        func run() throws {
            let r = try Reactor()
            let c = Counter()
            let sock = try DatagramSocket(reactor: r, fd: try RelayBaseline.open(try RelayBaseline.endpoint(bind)),
                                          backend: .mmsg, handler: c)
            let out = UnsafeMutablePointer<CReactor_dgram>.allocate(capacity: 1)
            let byte = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
            byte.pointee = 0
            if let punch {
                let ep = try RelayBaseline.endpoint(punch)
                RelayBaseline.every(r, ms: 1000) {
                    out.pointee = CReactor_dgram()
                    out.pointee.data = byte
                    out.pointee.len = 1
                    out.pointee.peer = ep
                    _ = sock.send(DatagramBatch(base: out, count: 1))
                }
            }
            if let stats {
                RelayBaseline.every(r, ms: statsMs) {
                    RelayBaseline.writeStats(stats, "mono_ns=\(Reactor.now()) cpu_ns=\(RelayBaseline.processCPU()) received=\(sock.counters.received) bytes=\(c.bytes)")
                }
            }
            RelayBaseline.say("relay-baseline sink: \(bind)\(punch.map { ", punching \($0)" } ?? "")")
            r.run()
            withExtendedLifetime((sock, c)) {}
        }
    }
}
