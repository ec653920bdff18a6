// ws-bench linkemu: a user-space link emulator (this kernel has no netem),
// forwarding IP packets between two TUN devices of a router namespace with
// per-direction delay, jitter, rate + drop-tail queue, random loss and up/down.
//
//   left ns ── veth ──▶ router ns: ip rule iif <veth-left>  → table → dev <tun a>
//                                  ws-bench linkemu: read a ─▶ LinkEmulator(ab) ─▶ write b
//                                  (b's packets re-enter the router, routed by main ─▶ veth-right)
//   right ns ◀─ veth ──            and the same for b ─▶ LinkEmulator(ba) ─▶ a
//
// Why TUN and not AF_PACKET: a TUN device without IFF_VNET_HDR gets every
// packet finished by the kernel (GSO/TSO super-packets segmented, checksums
// completed), so what the emulator queues and paces is exactly what the wire
// would carry, whatever offloads the veths have; an AF_PACKET bridge on veths
// would see 64 KiB GSO frames and partial checksums unless every sender's
// offloads were switched off. The cost is two extra routing hops (TTL −2) and
// policy routing in the router namespace (perf/linkemu and tests/linkemu.sh set
// it up with tests/lib/linkemu.sh). At the rates tested (≤ 100 Mbit/s) one
// read + one write syscall per packet is far from the limit.
//
// Packet path: one PacketPool slab (allocated at start) holds packets while they
// wait; the LinkEmulator machines hold handles; one timerfd armed at the next
// due packet (re-armed once per batch). Nothing is allocated per packet: under
// perf/lib/malloccount.so the stats line counts allocations inside the packet
// path (`packet_path_mallocs`; tests/linkemu.sh checks it stays 0).
//
// Control: commands, one per line, written to the FIFO `--control` (created if
// missing): `down [ab|ba]`, `up [ab|ba]`, `set ab|ba|both SETTINGS` (the
// --ab syntax), `stats` (prints one JSON line of counters to stdout), `quit`.
// SIGTERM/SIGINT also print the stats line and exit.
import ArgumentParser
import CReactor
import Foundation
import Reactor
import Simulation
import Support

struct LinkEmu: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linkemu",
        abstract: "Emulated link between two TUN devices: delay, jitter, rate+queue, loss, up/down per direction.",
        discussion: """
            SETTINGS: comma-separated delay=20ms,jitter=1ms,rate=50mbit,queue=100ms|200p,loss=0.01|1%,up|down.
            Direction ab: packets read from --a are written to --b; ba the other way.
            Control FIFO lines: down|up [ab|ba], set ab|ba|both SETTINGS, stats, quit.
            """)

    @Option(help: "TUN device of side a (created).") var a: String
    @Option(help: "TUN device of side b (created).") var b: String
    @Option(help: "Settings a→b.") var ab: String = ""
    @Option(help: "Settings b→a (default: the same as --ab).") var ba: String?
    @Option(help: "MTU of both TUN devices.") var mtu: Int = 1500
    @Option(help: "Control FIFO path (optional).") var control: String?
    @Option(help: "Packet buffers (packets queued + in flight, both directions).") var buffers: Int = 16384
    @Option(help: "Loss/jitter RNG seed.") var seed: UInt64 = 1

    func run() throws {
        let sab: LinkSettings
        let sba: LinkSettings
        do {
            sab = try LinkSettings.parse(ab)
            sba = try LinkSettings.parse(ba ?? ab)
        } catch {
            throw ValidationError("\(error)")
        }
        guard mtu >= 576 && mtu <= 9000, buffers >= 16 && buffers <= 1 << 20 else {
            throw ValidationError("--mtu 576...9000, --buffers 16...1048576")
        }
        let reactor = try Reactor()
        let emu = Emulator(reactor: reactor, ab: sab, ba: sba, mtu: mtu, buffers: buffers, seed: seed)
        try emu.start(a: a, b: b, control: control)
        FileHandle.standardError.write("linkemu: \(emu.devA!.name) ⇄ \(emu.devB!.name), ab \(sab), ba \(sba)\n".data(using: .utf8)!)
        reactor.run()
        FileHandle.standardOutput.write((emu.statsJSON() + "\n").data(using: .utf8)!)
    }
}

final class Emulator: TunHandler {
    let reactor: Reactor
    let pool: PacketPool
    var ab: LinkEmulator<PacketHandle>
    var ba: LinkEmulator<PacketHandle>
    var devA: TunDevice?
    var devB: TunDevice?
    let mtu: Int
    let timerFD: Int32
    var armedAt: UInt64 = 0
    var poolExhausted = 0
    var tooBig = 0
    var writeFailed = 0
    /// Allocations inside the packet path (tunRead, flush), when perf/lib/malloccount.so is preloaded.
    var packetPathMallocs: UInt64 = 0
    var controlFD: Int32 = -1
    var controlBuf = [UInt8]()
    let readBuf = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)

    init(reactor: Reactor, ab: LinkSettings, ba: LinkSettings, mtu: Int, buffers: Int, seed: UInt64) {
        self.reactor = reactor
        self.mtu = mtu
        pool = PacketPool(count: buffers, bufferSize: mtu)
        self.ab = LinkEmulator(settings: ab, capacity: buffers, seed: seed)
        self.ba = LinkEmulator(settings: ba, capacity: buffers, seed: seed &+ 1)
        timerFD = CReactor_timerfd()
    }

    func start(a: String, b: String, control: String?) throws {
        precondition(timerFD >= 0, "timerfd")
        devA = try TunDevice(reactor: reactor, name: a, handler: self)
        devB = try TunDevice(reactor: reactor, name: b, handler: self)
        try devA!.setUp(mtu: mtu)
        try devB!.setUp(mtu: mtu)
        _ = try reactor.register(fd: timerFD, events: .readable) { [unowned self] _ in
            var n: UInt64 = 0
            _ = CReactor_timerfd_read(self.timerFD, &n)
            self.armedAt = 0
            self.flush()
        }
        var sigs: [Int32] = [SIGTERM, SIGINT]
        let sfd = CReactor_signalfd(&sigs, 2)
        if sfd >= 0 {
            _ = try reactor.register(fd: sfd, events: .readable) { [unowned self] _ in
                _ = CReactor_signalfd_read(sfd)
                self.reactor.stop()
            }
        }
        if let path = control {
            if access(path, F_OK) != 0 && mkfifo(path, 0o600) != 0 {
                throw ValidationError("mkfifo \(path): errno \(errno)")
            }
            // O_RDWR: the FIFO never reports EOF when a writer closes (we are a writer too).
            controlFD = open(path, O_RDWR | O_NONBLOCK)
            guard controlFD >= 0 else { throw ValidationError("open \(path): errno \(errno)") }
            _ = try reactor.register(fd: controlFD, events: .readable) { [unowned self] _ in self.readControl() }
        }
    }

    // MARK: packet path

    func tunRead(_ batch: TunBatch, device: TunDevice) {
        let m0 = MallocCounter.count
        defer { if let a = m0, let b = MallocCounter.count { packetPathMallocs &+= b &- a } }
        let now = Instant(ns: Reactor.now())
        let fromA = device === devA
        for i in 0..<batch.count {
            let (p, len) = batch.packet(i)
            guard len <= pool.bufferSize else {
                tooBig += 1
                continue
            }
            guard let h = pool.take() else {
                poolExhausted += 1
                continue
            }
            pool.buffer(h).baseAddress!.copyMemory(from: p, byteCount: len)
            pool.setLength(h, len)
            let refused = fromA ? ab.send(h, length: len, now: now) : ba.send(h, length: len, now: now)
            if let r = refused { pool.release(r) }
        }
        flush()
    }

    /// Writes every packet due now, then arms the timer for the next one.
    func flush() {
        let m0 = MallocCounter.count
        defer { if let a = m0, let b = MallocCounter.count { packetPathMallocs &+= b &- a } }
        let now = Instant(ns: Reactor.now())
        drain(&ab, to: devB, now: now)
        drain(&ba, to: devA, now: now)
        var next: UInt64 = 0
        if let t = ab.pollTimeout() { next = t.ns }
        if let t = ba.pollTimeout() { next = next == 0 ? t.ns : min(next, t.ns) }
        if next != 0 && (armedAt == 0 || next < armedAt || armedAt <= now.ns) {
            armedAt = max(next, 1)
            _ = CReactor_timerfd_arm(timerFD, armedAt)
        }
    }

    private func drain(_ link: inout LinkEmulator<PacketHandle>, to dev: TunDevice?, now: Instant) {
        while let o = link.pollOutput(now: now) {
            switch o {
            case .deliver(let h, let len):
                if let d = dev, !d.write(pool.buffer(h).baseAddress!, length: len) { writeFailed += 1 }
                pool.release(h)
            case .drop(let h):
                pool.release(h)
            }
        }
    }

    // MARK: control

    private func readControl() {
        while true {
            let r = CReactor_read(controlFD, readBuf, 4096)
            if r <= 0 { break }
            controlBuf.append(contentsOf: UnsafeRawBufferPointer(start: readBuf, count: Int(r)))
            while let nl = controlBuf.firstIndex(of: 10) {
                let line = String(decoding: controlBuf[..<nl], as: UTF8.self)
                controlBuf.removeSubrange(...nl)
                command(line)
            }
            if controlBuf.count > 65536 { controlBuf.removeAll() }  // a line that never ends
        }
    }

    func command(_ line: String) {
        let now = Instant(ns: Reactor.now())
        let words = line.split(separator: " ").map(String.init)
        guard let verb = words.first else { return }
        let dir = words.count > 1 ? words[1] : "both"
        let dirs: (Bool, Bool)? = dir == "ab" ? (true, false) : dir == "ba" ? (false, true) : dir == "both" ? (true, true) : nil
        switch verb {
        case "down", "up":
            guard let (x, y) = dirs else { return complain(line) }
            if x { ab.setUp(verb == "up", now: now) }
            if y { ba.setUp(verb == "up", now: now) }
        case "set":
            guard let (x, y) = dirs, words.count > 2 else { return complain(line) }
            do {
                if x { ab.update(try LinkSettings.parse(words[2], base: ab.settings), now: now) }
                if y { ba.update(try LinkSettings.parse(words[2], base: ba.settings), now: now) }
            } catch {
                return complain("\(line): \(error)")
            }
        case "stats":
            FileHandle.standardOutput.write((statsJSON() + "\n").data(using: .utf8)!)
            return
        case "quit":
            reactor.stop()
            return
        default:
            return complain(line)
        }
        FileHandle.standardError.write("linkemu: \(line) → ab \(ab.settings), ba \(ba.settings)\n".data(using: .utf8)!)
        flush()
    }

    private func complain(_ line: String) {
        FileHandle.standardError.write("linkemu: bad control command: \(line)\n".data(using: .utf8)!)
    }

    func statsJSON() -> String {
        func dir(_ l: LinkEmulator<PacketHandle>) -> String {
            let c = l.counters
            return "{\"settings\": \"\(l.settings)\", \"received\": \(c.received), \"delivered\": \(c.delivered), "
                + "\"delivered_bytes\": \(c.deliveredBytes), \"dropped_loss\": \(c.droppedLoss), "
                + "\"dropped_queue\": \(c.droppedQueue), \"dropped_down\": \(c.droppedDown), "
                + "\"dropped_capacity\": \(c.droppedCapacity), \"max_queued\": \(c.maxQueued)}"
        }
        return "{\"ab\": \(dir(ab)), \"ba\": \(dir(ba)), \"pool_exhausted\": \(poolExhausted), "
            + "\"too_big\": \(tooBig), \"write_failed\": \(writeFailed), "
            + "\"packet_path_mallocs\": \(MallocCounter.count == nil ? "null" : String(packetPathMallocs))}"
    }
}
