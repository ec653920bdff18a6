// The data path: TUN → seal → UDP, and UDP → open → TUN, in batches, in place.
//
// Packet buffers belong to the reactor's slabs (TunDevice, DatagramSocket);
// every packet is sealed or opened where it lies, with the DATA header written
// into the headroom in front of it. One sendmmsg per batch going out; TUN
// writes are one per packet (until offloads coalesce them). Nothing here
// allocates.
import CReactor
import Reactor

extension Daemon {
    // MARK: TUN → UDP

    func tunRead(_ batch: TunBatch) {
        let now = Self.now()
        var n = 0
        for i in 0..<batch.count {
            let (p, len) = batch.packet(i)
            guard let (dst, fam) = IPHeader.destination(p, length: len) else {
                count("tun_not_ip")
                continue
            }
            guard let peer = routes.lookup(dst, family: fam) else {
                count("no_route")
                continue
            }
            let buf = UnsafeMutableRawBufferPointer(start: p - Self.headroom, count: Self.headroom + batch.capacity)
            switch tunnels.send(to: PeerID(rawValue: peer), buf, payloadOffset: Self.headroom, payloadLength: len, now: now) {
            case .send(let ep, let offset, let length):
                out[n] = CReactor_dgram()
                out[n].data = (buf.baseAddress! + offset).assumingMemoryBound(to: UInt8.self)
                out[n].len = UInt32(length)
                out[n].peer = ep.creactor
                n += 1
            case .queued:
                break
            case .drop(let reason):
                count("send_" + reason.rawValue)
            }
        }
        if n > 0 {
            let sent = udp.send(DatagramBatch(base: out, count: n))
            if sent < n { drops["udp_send_full", default: 0] &+= UInt64(n - sent) }
        }
        service(now: now)
    }

    // MARK: UDP → TUN

    func udpReceived(_ batch: DatagramBatch) {
        let now = Self.now()
        for i in 0..<batch.count {
            let d = batch[i]
            let buf = UnsafeMutableRawBufferPointer(start: d.pointee.data, count: Int(d.pointee.cap))
            let from = Endpoint(d.pointee.peer)
            let type = d.pointee.len > 0 ? d.pointee.data[0] : 0
            // Handshake messages (types 1, 2) feed the load meter; under load they must carry a cookie (mac2).
            let underLoad = (type == 1 || type == 2) ? loadMeter.record(now: now) : false
            switch tunnels.receive(buf, length: Int(d.pointee.len), from: from, now: now, underLoad: underLoad) {
            case .data(let peer, let offset, let length):
                guard length > 0 else { continue }  // keepalive
                let p = buf.baseAddress! + offset
                guard let (src, fam) = IPHeader.source(p, length: length) else {
                    count("inner_not_ip")
                    continue
                }
                // Cryptokey routing, inbound: the inner source must be one of this member's addresses.
                guard routes.allows(peer: peer.rawValue, source: src, family: fam) else {
                    count("inner_source_not_allowed")
                    continue
                }
                if !tun.write(p, length: length) { count("tun_write") }
            case .control:
                break
            case .drop(let reason):
                count(reason.rawValue)
            }
        }
        service(now: now)
    }
}
