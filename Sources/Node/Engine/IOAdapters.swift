// One adapter per I/O source a lane has: the UDP socket and the TUN queue
// hand their batches to the lane's data path (DataPath.swift). The control
// socket's adapter is ControlServer.swift, the state directory's StateStore.swift.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Reactor
import Logging

final class UDPSide: DatagramHandler {
    unowned let lane: Lane
    init(_ lane: Lane) { self.lane = lane }
    func received(_ batch: DatagramBatch, on socket: DatagramSocket) { lane.udpReceived(batch) }
}

final class TunSide: TunHandler {
    unowned let lane: Lane
    init(_ lane: Lane) { self.lane = lane }
    func tunRead(_ batch: TunBatch, device: TunDevice) { lane.tunRead(batch) }
}
