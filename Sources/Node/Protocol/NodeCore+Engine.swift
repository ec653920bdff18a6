// What the engine's data path asks NodeCore before sealing a run of segments.

import Support
import Wire
import Crypto

extension NodeCore {
    /// Bytes of header room a payload for `peer` needs in front of it: the DATA
    /// header, plus the RELAY header when the active path goes through an anchor
    /// (or when there is no path yet, since the first packet is relayed).
    /// (The engine splits super-packets into slots with exactly this room, so
    /// sealed segments lie back to back and leave in one GSO send.)
    public func headerRoom(for peer: PeerID) -> Int {
        guard peer.rawValue >= 0, peer.rawValue < roster.count else { return DataMessage.headerSize }
        let c = tunnels.paths[peer]
        // No path yet: the first packet goes through an anchor (relay first, punch meanwhile).
        let relayed = c.activeKind == .relay || (c.active == nil && !isAnchor)
        return relayed ? DataMessage.headerSize + RelayMessage.headerSize : DataMessage.headerSize
    }
}
