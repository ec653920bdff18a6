// Which reactor a datagram belongs to, decided by the kernel before any reactor wakes.
//
// The engine runs one reactor per core, each with its own UDP socket in one
// SO_REUSEPORT group on the node's port, and steers DATA to the reactor that
// owns the receiver index (it hands out indices whose low byte % groups names
// the owner). A classic BPF program attached to the group makes that choice
// in the kernel (Sources/CReactor/steering.c); `Steering.group` is the same
// decision in Swift, so the engine can check a datagram landed where it
// belongs and so the program is documented where Swift readers look:
//
//                      UDP :51820 ── SO_REUSEPORT group, program attached
//                          │
//         ┌────────────────┼────────────────┐  socket = program(payload)
//         ▼                ▼                ▼
//     socket 0         socket 1         socket 2       (in the order bound)
//     reactor 0        reactor 1        reactor 2
//     + handshakes,
//       probes, short
//
//   DATA     type(1)=4 reserved(3) receiver_index(4, LE) counter(8) ...
//            -> byte[4] % groups
//   RELAY    type(1)=7 hop_tag(7) member_id(8) inner datagram (offset 16)
//            -> byte[20] % groups when relayInner and the inner type byte[16] is 4
//               (byte[21] with relayByPair: an anchor, which forwards it on that lane)
//   else     -> 0 (also any datagram too short for a load: cBPF aborts with 0)
//
// These offsets are the one place the reactor knows the wire format (its
// layouts live in Node/Wire: DataMessage.swift, Relay.swift).
import CReactor

extension UDPSocket {
    /// Attaches the steering program to `fd`'s SO_REUSEPORT group (any member
    /// socket will do; the program is the group's). `groups` is the number of
    /// sockets in the group, 1...255 in practice: only the index's low byte is
    /// read, so with more than 256 sockets the last ones never receive DATA.
    /// `relayByPair` (anchors, with `relayInner`): a RELAY by the inner index's second byte.
    public static func attachSteering(fd: Int32, groups: Int, relayInner: Bool, relayByPair: Bool = false) throws(SyscallError) {
        precondition(groups > 0 && groups <= Int(UInt32.max), "a reuseport group has at least one socket")
        _ = try syscallValue("setsockopt(SO_ATTACH_REUSEPORT_CBPF)") {
            CReactor_attach_steering(fd, UInt32(groups), relayInner ? (relayByPair ? 2 : 1) : 0)
        }
    }
}

/// The steering decision of `CReactor_attach_steering`'s program, as a pure function.
public enum Steering {
    /// Type byte of DATA (Node/Wire `MessageType.data`).
    public static let dataType: UInt8 = 4
    /// Type byte of RELAY (Node/Wire `MessageType.relay`).
    public static let relayType: UInt8 = 7
    /// Offset of the receiver index's low byte in DATA.
    public static let indexOffset = 4
    /// Offset of the inner datagram in RELAY.
    public static let relayHeaderSize = 16

    /// The index of the socket in the group (0..<groups) the kernel delivers
    /// `datagram` (a UDP payload) to once the program is attached: exactly what
    /// the program returns, short datagrams included.
    @inline(__always)
    public static func group(of datagram: UnsafeRawBufferPointer, groups: Int, relayInner: Bool, relayByPair: Bool = false) -> Int {
        precondition(groups > 0, "a reuseport group has at least one socket")
        // Each guard is one of the program's loads: past the end, the program returns 0.
        guard datagram.count > 0 else { return 0 }
        switch datagram[0] {
        case dataType:
            guard datagram.count > indexOffset else { return 0 }
            return Int(datagram[indexOffset]) % groups
        case relayType where relayInner:
            guard datagram.count > relayHeaderSize, datagram[relayHeaderSize] == dataType else { return 0 }
            let at = relayHeaderSize + indexOffset + (relayByPair ? 1 : 0)
            guard datagram.count > at else { return 0 }
            return Int(datagram[at]) % groups
        default:
            return 0
        }
    }
}
