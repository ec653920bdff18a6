// A TUN device owned by the reactor: IFF_TUN|IFF_NO_PI, non-blocking.
//
// Reads drain the device until EAGAIN on each readiness event; the handler
// gets one packet at a time in a buffer the device owns (header room in front
// for in-place encapsulation). Offloads (IFF_VNET_HDR, TSO) belong to the fast
// data path and are opt-in here.
import CReactor

public protocol TunHandler: AnyObject {
    /// One IP packet at `packet[0..<length]`, with `headroom` writable bytes before it.
    func tunPacket(_ packet: UnsafeMutableRawPointer, length: Int, device: TunDevice)
}

public final class TunDevice {
    public let fd: Int32
    public let name: String
    public let headroom: Int
    public let bufferSize: Int
    public private(set) var readErrors = 0
    public private(set) var writeErrors = 0
    let reactor: Reactor
    weak var handler: TunHandler?
    private var registration: Registration?
    private let buffer: UnsafeMutableRawPointer

    /// Opens (or creates) TUN interface `name` ("" lets the kernel choose) and registers it.
    public init(reactor: Reactor, name: String, multiQueue: Bool = false, headroom: Int = 64, bufferSize: Int = 65536 + 128,
                handler: TunHandler) throws(SyscallError) {
        var out = [CChar](repeating: 0, count: 32)
        let flags: Int32 = multiQueue ? Int32(CReactor_IFF_MULTI_QUEUE) : 0
        fd = try syscallValue("open(/dev/net/tun)+TUNSETIFF") { CReactor_tun_open(name, flags, &out) }
        self.name = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.reactor = reactor
        self.headroom = headroom
        self.bufferSize = bufferSize
        self.handler = handler
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
        do throws(SyscallError) {
            registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.drain() }
        } catch {
            _ = CReactor_close(fd)
            buffer.deallocate()
            throw error
        }
    }

    deinit {
        close()
        buffer.deallocate()
    }

    public func close() {
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
        let payload = buffer + headroom
        let cap = bufferSize - headroom
        for _ in 0..<256 {
            let r: IOResult
            do throws(SyscallError) {
                r = try syscall("read(tun)") { CReactor_read(fd, payload, cap) }
            } catch {
                readErrors += 1
                reactor.report(error)
                if error.isBug { close() }
                return
            }
            guard case .done(let n) = r else { return }
            if n > 0 { handler?.tunPacket(payload, length: n, device: self) }
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
