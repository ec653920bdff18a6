// A TUN device owned by the reactor: IFF_TUN|IFF_NO_PI, non-blocking, and,
// when offloads are asked for, IFF_VNET_HDR with TUNSETOFFLOAD.
//
// The batch contract (reads):
//   - The device owns one slab. Each readiness event drains the device
//     (bounded) into it, packet after packet, bump-allocated: every packet gets
//     `headroom` bytes in front of it (for the DATA header written in place),
//     its own bytes, then at least `tailroom` bytes (for the AEAD tag). A small
//     packet takes a small slice of the slab; a TSO super-packet up to 64 KiB.
//   - With a vnet header, the 10 bytes right in front of each packet (inside its
//     headroom) are the virtio_net_hdr the kernel wrote: `vnetHeader(i)`. It
//     says whether the packet is a GSO super-packet to split (gso_type, gso_size)
//     and whether its checksum is still to be completed (NEEDS_CSUM). Without
//     offloads every packet is one plain IP packet.
//   - The handler gets the whole batch at once (so what it sends out leaves in
//     one sendmmsg). Views are valid only during the call; the handler may
//     rewrite every byte of a packet's headroom, packet and tailroom.
//
// Writes: `write` takes one plain IP packet (a zero vnet header is put in
// front when the device has one); `writeGather` takes one packet gathered from
// pieces (vnet header, headers, payloads where they lie: a coalesced GSO
// super-packet without copying it together). One syscall per packet: the TUN
// driver has no batched write for user space.
//
// Offloads degrade once (STYLE 10): what the kernel refuses is switched off
// for good and listed in `notes` (one log line each, by the owner), and the
// device works without it.
import CReactor

public protocol TunHandler: AnyObject {
    /// Packets read from the device: `batch.packet(i)` is one IP packet (or, with
    /// offloads, a GSO super-packet whose vnet header is `batch.vnetHeader(i)`),
    /// with `device.headroom` writable bytes before it and `batch.capacity(i)`
    /// writable bytes from its start. Valid only during the call.
    func tunRead(_ batch: TunBatch, device: TunDevice)
}

/// Offloads a TUN device can take from the kernel (TUNSETOFFLOAD).
public struct TunOffloads: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Packets may come with their checksum left to us (NEEDS_CSUM).
    public static let checksum = TunOffloads(rawValue: UInt32(CReactor_TUN_F_CSUM))
    public static let tso4 = TunOffloads(rawValue: UInt32(CReactor_TUN_F_TSO4))
    public static let tso6 = TunOffloads(rawValue: UInt32(CReactor_TUN_F_TSO6))
    public static let tsoECN = TunOffloads(rawValue: UInt32(CReactor_TUN_F_TSO_ECN))
    public static let uso4 = TunOffloads(rawValue: UInt32(CReactor_TUN_F_USO4))
    public static let uso6 = TunOffloads(rawValue: UInt32(CReactor_TUN_F_USO6))
    /// TCP segmentation offload both ways (the data path's default).
    public static let tso: TunOffloads = [.checksum, .tso4, .tso6, .tsoECN]
    public static let all: TunOffloads = [.tso, .uso4, .uso6]

    public var description: String {
        var s: [String] = []
        if contains(.checksum) { s.append("csum") }
        if contains(.tso4) { s.append("tso4") }
        if contains(.tso6) { s.append("tso6") }
        if contains(.tsoECN) { s.append("tso-ecn") }
        if contains(.uso4) { s.append("uso4") }
        if contains(.uso6) { s.append("uso6") }
        return s.isEmpty ? "none" : s.joined(separator: ",")
    }
}

/// A batch of packets read from a TUN device.
public struct TunBatch {
    let base: UnsafeMutableRawPointer
    let offsets: UnsafeMutablePointer<Int>
    let lengths: UnsafeMutablePointer<Int>
    let capacities: UnsafeMutablePointer<Int>
    /// 10 when every packet has a virtio_net_hdr in front of it, else 0.
    public let vnetHeaderLength: Int
    public let count: Int
    /// Packet i: its first byte and its length.
    @inline(__always) public func packet(_ i: Int) -> (UnsafeMutableRawPointer, Int) {
        (base + offsets[i], lengths[i])
    }
    /// Bytes writable from packet i's start (its length plus at least the device's tailroom).
    @inline(__always) public func capacity(_ i: Int) -> Int { capacities[i] }
    /// The virtio_net_hdr bytes in front of packet i (nil without offloads).
    @inline(__always) public func vnetHeader(_ i: Int) -> UnsafeRawBufferPointer? {
        vnetHeaderLength == 0 ? nil : UnsafeRawBufferPointer(start: base + offsets[i] - vnetHeaderLength, count: vnetHeaderLength)
    }
}

public final class TunDevice {
    public let fd: Int32
    public let name: String
    public let headroom: Int
    public let tailroom: Int
    /// Largest packet one read may return (a GSO super-packet: 64 KiB).
    public let maxPacket: Int
    public let batchSize: Int
    /// Reads and writes carry a virtio_net_hdr (IFF_VNET_HDR).
    public let vnetHeader: Bool
    /// What the kernel accepted of the offloads asked for.
    public private(set) var offloads: TunOffloads = []
    /// What the kernel refused at open, one line each (the owner logs them once).
    public private(set) var notes: [String] = []
    public private(set) var readErrors = 0
    public private(set) var writeErrors = 0
    /// The errno of the last write that failed (EAGAIN when the queue was full), for callers that degrade.
    public private(set) var lastWriteErrno: Int32 = 0
    let reactor: Reactor
    /// Held strongly until `close()`, which lets go of it (and so breaks any cycle through it).
    var handler: TunHandler?
    private var registration: Registration?
    private let slab: UnsafeMutableRawPointer
    private let slabSize: Int
    private let offsets: UnsafeMutablePointer<Int>
    private let lengths: UnsafeMutablePointer<Int>
    private let capacities: UnsafeMutablePointer<Int>
    /// Scratch for `write`: a zero vnet header and the two pieces of a plain packet.
    private let zeroHeader: UnsafeMutableRawPointer
    /// The header of `write(_:length:header:)`.
    private let headerScratch: UnsafeMutableRawPointer
    private let iov: UnsafeMutablePointer<CReactor_iovec>

    public static let vnetHeaderLength = Int(CReactor_VIRTIO_NET_HDR_LEN)

    /// Opens (or creates) TUN interface `name` ("" lets the kernel choose) and registers it.
    /// - offloads: asked of the kernel with IFF_VNET_HDR + TUNSETOFFLOAD; [] opens a plain device.
    ///   What is refused degrades (see `notes`); the device opens either way.
    /// - slabSize: read memory; a batch ends when a 64 KiB packet might not fit any more. Small
    ///   enough that a batch stays in L2 while it is sealed (256 KiB measured ~7% less CPU per GB than 1 MiB).
    public init(reactor: Reactor, name: String, multiQueue: Bool = false, offloads wanted: TunOffloads = [],
                headroom: Int = 64, tailroom: Int = 64, slabSize: Int = 256 << 10,
                batchSize: Int = 128, handler: TunHandler) throws(SyscallError) {
        precondition(headroom >= Self.vnetHeaderLength && batchSize > 0)
        var out = [CChar](repeating: 0, count: 32)
        let mq: Int32 = multiQueue ? Int32(CReactor_IFF_MULTI_QUEUE) : 0
        var notes: [String] = []
        var vnet = !wanted.isEmpty
        var openedFD: Int32
        if vnet {
            let r = CReactor_tun_open(name, mq | Int32(CReactor_IFF_VNET_HDR), &out)
            if r >= 0 {
                openedFD = r
            } else {
                notes.append("IFF_VNET_HDR refused (\(Errno.name(-r))); TUN offloads off, one packet per read")
                vnet = false
                openedFD = try syscallValue("open(/dev/net/tun)+TUNSETIFF") { CReactor_tun_open(name, mq, &out) }
            }
        } else {
            openedFD = try syscallValue("open(/dev/net/tun)+TUNSETIFF") { CReactor_tun_open(name, mq, &out) }
        }
        fd = openedFD
        var accepted: TunOffloads = []
        if vnet {
            // Ask for everything, then drop what this kernel lacks (USO: Linux 6.2), then the rest.
            var ask = wanted
            while true {
                let r = CReactor_tun_set_offload(openedFD, UInt32(ask.rawValue))
                if r >= 0 {
                    accepted = ask
                    break
                }
                let fewer: TunOffloads
                if !ask.isDisjoint(with: [.uso4, .uso6]) {
                    fewer = ask.subtracting([.uso4, .uso6])
                } else if ask.contains(.tsoECN) {
                    fewer = ask.subtracting(.tsoECN)
                } else {
                    fewer = []
                }
                notes.append("TUNSETOFFLOAD \(ask) refused (\(Errno.name(-r))); trying \(fewer)")
                if fewer.isEmpty { break }
                ask = fewer
            }
            if accepted != wanted && !accepted.isEmpty { notes.append("TUN offloads: \(accepted) (asked \(wanted))") }
        }
        self.name = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.reactor = reactor
        self.headroom = headroom
        self.tailroom = tailroom
        self.maxPacket = 65535
        self.batchSize = batchSize
        self.vnetHeader = vnet
        self.offloads = accepted
        self.notes = notes
        self.handler = handler
        self.slabSize = max(slabSize, 2 * (headroom + 65535 + tailroom + 64))
        slab = .allocate(byteCount: self.slabSize, alignment: 64)
        offsets = .allocate(capacity: batchSize)
        lengths = .allocate(capacity: batchSize)
        capacities = .allocate(capacity: batchSize)
        zeroHeader = .allocate(byteCount: 16, alignment: 16)
        zeroHeader.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
        headerScratch = .allocate(byteCount: 16, alignment: 16)
        headerScratch.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
        iov = .allocate(capacity: 2)
        iov.initialize(repeating: CReactor_iovec(), count: 2)
        do throws(SyscallError) {
            registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.drain() }
        } catch {
            _ = CReactor_close(fd)
            freeMemory()
            throw error
        }
    }

    deinit {
        close()
        freeMemory()
    }

    private func freeMemory() {
        slab.deallocate()
        offsets.deallocate()
        lengths.deallocate()
        capacities.deallocate()
        zeroHeader.deallocate()
        headerScratch.deallocate()
        iov.deallocate()
    }

    /// Stops reading (the handler has nowhere to put packets now) or starts
    /// again. While paused, the kernel holds what arrives in the device's queue
    /// and drops past it (counted as the device's tx drops), as when a reader is slow.
    public var paused = false {
        didSet {
            guard paused != oldValue, let reg = registration else { return }
            do throws(SyscallError) {
                try reactor.modify(reg, events: paused ? [] : .readable)
            } catch {
                reactor.report(error)
            }
        }
    }

    public func close() {
        handler = nil
        guard let reg = registration else { return }
        reactor.deregister(reg)
        registration = nil
        _ = CReactor_close(fd)
    }

    public func setUp(mtu: Int) throws(SyscallError) {
        _ = try syscallValue("SIOCSIFMTU") { CReactor_if_set_mtu(name, Int32(mtu)) }
        _ = try syscallValue("SIOCSIFFLAGS(up)") { CReactor_if_set_up(name, 1) }
    }

    private func drain() {
        let vlen = vnetHeader ? Self.vnetHeaderLength : 0
        // Room one read may need: headroom, the largest packet, tailroom, alignment.
        let reserve = headroom + maxPacket + tailroom + 64
        for _ in 0..<8 {
            var n = 0
            var used = 0
            var more = true
            while n < batchSize && used + reserve <= slabSize {
                let start = used + headroom
                let r: IOResult
                do {
                    r = try syscall("read(tun)") { CReactor_read(fd, slab + start - vlen, maxPacket + vlen) }
                } catch {
                    readErrors += 1
                    reactor.report(error)
                    if error.isBug { close() }
                    more = false
                    break
                }
                guard case .done(let got) = r else {
                    more = false
                    break
                }
                let len = got - vlen
                if len > 0 {
                    offsets[n] = start
                    lengths[n] = len
                    let next = (start + len + tailroom + 63) & ~63
                    capacities[n] = next - start
                    used = next
                    n += 1
                }
            }
            if n > 0 {
                handler?.tunRead(TunBatch(base: slab, offsets: offsets, lengths: lengths, capacities: capacities,
                                          vnetHeaderLength: vlen, count: n), device: self)
            }
            if !more || registration == nil || paused { return }
        }
    }

    /// Writes one plain IP packet to the interface. False if it was dropped (counted).
    @discardableResult
    public func write(_ packet: UnsafeRawPointer, length: Int) -> Bool {
        if !vnetHeader {
            return finish("write(tun)") { CReactor_write(fd, packet, length) }
        }
        iov[0] = CReactor_iovec(base: zeroHeader, len: Self.vnetHeaderLength)
        iov[1] = CReactor_iovec(base: UnsafeMutableRawPointer(mutating: packet), len: length)
        return finish("writev(tun)") { CReactor_writev(fd, iov, 2) }
    }

    /// Writes one packet with this virtio_net_hdr (a checksum left partial:
    /// `VirtioNetHeader.partialChecksum`). Only with `vnetHeader`; false (counted
    /// as a write error) without. False if dropped (counted).
    @discardableResult
    public func write(_ packet: UnsafeRawPointer, length: Int, header: VirtioNetHeader) -> Bool {
        guard vnetHeader else {
            writeErrors += 1
            return false
        }
        header.write(to: headerScratch)
        iov[0] = CReactor_iovec(base: headerScratch, len: Self.vnetHeaderLength)
        iov[1] = CReactor_iovec(base: UnsafeMutableRawPointer(mutating: packet), len: length)
        return finish("writev(tun)") { CReactor_writev(fd, iov, 2) }
    }

    /// Writes one packet gathered from `count` pieces. With `vnetHeader`, the
    /// first `TunDevice.vnetHeaderLength` bytes are its virtio_net_hdr (a GSO
    /// super-packet the kernel segments or delivers as one). False if dropped (counted).
    @discardableResult
    public func writeGather(_ parts: UnsafePointer<CReactor_iovec>, count: Int) -> Bool {
        finish("writev(tun)") { CReactor_writev(fd, parts, Int32(count)) }
    }

    @inline(__always)
    private func finish(_ call: StaticString, _ body: () -> Int32) -> Bool {
        do throws(SyscallError) {
            switch try syscall(call, body) {
            case .done: return true
            case .wouldBlock:
                writeErrors += 1
                lastWriteErrno = EAGAIN_
                return false
            }
        } catch {
            writeErrors += 1
            lastWriteErrno = error.errno
            reactor.report(error)
            return false
        }
    }
}
