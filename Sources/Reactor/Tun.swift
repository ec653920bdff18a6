// A TUN device owned by the reactor: IFF_TUN|IFF_NO_PI, non-blocking.
//
// Reads drain the device until EAGAIN (bounded) on each readiness event into
// a slab of `batchSize` buffers the device owns, each with `headroom` bytes in
// front for in-place encapsulation and tailroom after; the handler then gets the
// whole batch at once, so what it sends out goes in one sendmmsg. (A TUN read is
// one packet per syscall unless IFF_VNET_HDR offloads hand over super-packets:
// that is the fast data path's, opt-in.)
import CReactor

public protocol TunHandler: AnyObject {
    /// Packets read from the device: `batch.packet(i)` is one IP packet, with
    /// `device.headroom` writable bytes before it and the rest of its buffer after.
    /// Valid only during the call.
    func tunRead(_ batch: TunBatch, device: TunDevice)
}

/// A batch of packets read from a TUN device.
public struct TunBatch {
    let base: UnsafeMutableRawPointer
    let lengths: UnsafeMutablePointer<Int>
    let stride: Int
    let headroom: Int
    public let count: Int
    /// Packet i: its first byte and its length.
    @inline(__always) public func packet(_ i: Int) -> (UnsafeMutableRawPointer, Int) {
        (base + i * stride + headroom, lengths[i])
    }
    /// Bytes available from the packet's start to the end of its buffer.
    public var capacity: Int { stride - headroom }
}

public final class TunDevice {
    public let fd: Int32
    public let name: String
    public let headroom: Int
    public let bufferSize: Int
    public let batchSize: Int
    public private(set) var readErrors = 0
    public private(set) var writeErrors = 0
    let reactor: Reactor
    /// Held strongly until `close()`, which lets go of it (and so breaks any cycle through it).
    var handler: TunHandler?
    private var registration: Registration?
    private let slab: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>

    /// Opens (or creates) TUN interface `name` ("" lets the kernel choose) and registers it.
    public init(reactor: Reactor, name: String, multiQueue: Bool = false, headroom: Int = 64, bufferSize: Int = 2048,
                batchSize: Int = 64, handler: TunHandler) throws(SyscallError) {
        var out = [CChar](repeating: 0, count: 32)
        let flags: Int32 = multiQueue ? Int32(CReactor_IFF_MULTI_QUEUE) : 0
        fd = try syscallValue("open(/dev/net/tun)+TUNSETIFF") { CReactor_tun_open(name, flags, &out) }
        self.name = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.reactor = reactor
        self.headroom = headroom
        self.bufferSize = bufferSize
        self.batchSize = batchSize
        self.handler = handler
        slab = .allocate(byteCount: bufferSize * batchSize, alignment: 64)
        lengths = .allocate(capacity: batchSize)
        do throws(SyscallError) {
            registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.drain() }
        } catch {
            _ = CReactor_close(fd)
            slab.deallocate()
            lengths.deallocate()
            throw error
        }
    }

    deinit {
        close()
        slab.deallocate()
        lengths.deallocate()
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
        let cap = bufferSize - headroom
        for _ in 0..<8 {
            var n = 0
            var more = true
            while n < batchSize {
                let r: IOResult
                do {
                    r = try syscall("read(tun)") { CReactor_read(fd, slab + n * bufferSize + headroom, cap) }
                } catch {
                    readErrors += 1
                    reactor.report(error)
                    if error.isBug { close() }
                    more = false
                    break
                }
                guard case .done(let len) = r else {
                    more = false
                    break
                }
                if len > 0 {
                    lengths[n] = len
                    n += 1
                }
            }
            if n > 0 {
                handler?.tunRead(TunBatch(base: slab, lengths: lengths, stride: bufferSize, headroom: headroom, count: n), device: self)
            }
            if !more || registration == nil { return }
        }
    }

    /// Writes one IP packet to the interface. False if it was dropped (counted).
    @discardableResult
    public func write(_ packet: UnsafeRawPointer, length: Int) -> Bool {
        do throws(SyscallError) {
            switch try syscall("write(tun)", { CReactor_write(fd, packet, length) }) {
            case .done: return true
            case .wouldBlock:
                writeErrors += 1
                return false
            }
        } catch {
            writeErrors += 1
            reactor.report(error)
            return false
        }
    }
}
