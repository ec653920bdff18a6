// NodeCore's side of LAN discovery (LanDiscovery.swift has the machine, which
// the engine runs next to its mDNS socket):
//
//   LanEvent.discovered(member, lan endpoint) ──▶ addLanEndpoint ──▶ EndpointBook (source `lan`,
//                                                                     vouched for: the member signed it)
//     a session with the member is up or coming ──▶ punch now (the LAN endpoint is the first target)
//     no session yet ──▶ nothing until traffic: then ensurePath relays (or, with no anchor reachable,
//                        goes straight to the LAN endpoint) and the punch finds it
//     traffic already waiting for a path (no anchor reachable) ──▶ a path to the LAN endpoint now
//   a PATH_PONG from it ──▶ a path of kind `lan`, preferred over direct and relay (`prefers`)
//
// A LAN path never depends on the router: the two members' packets stay on
// their link, so a router without hairpin NAT does not matter (seed 2.7).

import Support
import Wire

extension NodeCore {
    /// Member `p`'s correctly signed LAN announcement came from `endpoint`
    /// (its LAN address and Whalescale port).
    public mutating func addLanEndpoint(_ p: PeerID, _ endpoint: Endpoint, now: Instant) {
        start(now)
        // An anchor is reached at its configured endpoint, always a `direct` path.
        guard isPeer(p), !isAnchorMember(p), PathManager.isUsableRemote(endpoint), !isOwnEndpoint(endpoint) else { return }
        guard book.setLan(p, endpoint, now: now) else { return }
        if let path = tunnels.paths[p].activePath, path.via == nil, path.remote == endpoint { return }
        if tunnels.paths[p].active == nil {
            // Traffic waits for a path (no anchor reachable): this is one. The
            // handshake goes there now instead of at its next retry.
            guard tunnels.isHandshaking(p) else { return }
            ensurePath(p, now: now)
            if tunnels.paths[p].active != nil { tunnels.expediteHandshake(p, now: now) }
            absorbTunnels(now: now)
            return
        }
        if tunnels.isEstablished(p, now: now) || tunnels.isHandshaking(p) {
            startPunch(p, now: now)
        }
    }

    /// Where member `p`'s LAN announcement came from (nil: none taken).
    public func lanEndpoint(of p: PeerID) -> Endpoint? { book.lan(p) }
}
