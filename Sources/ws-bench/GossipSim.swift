// ws-bench gossip-sim: N nodes running the real gossip machines over a
// modelled network (Simulation/GossipWorld.swift), virtual time.
//
//   1. every node holds every record (the converged state); steady state for
//      two anti-entropy periods: the bytes each node sends per second;
//   2. node 0's endpoint changes: virtual seconds until 99% and until every
//      node holds the new record, and whether that was within one period.
// The last line of output is one JSON object (perf/gossip-sim's contract).
import ArgumentParser
import Foundation
import Protocol
import Simulation
import Support

struct GossipSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gossip-sim",
        abstract: "Gossip convergence and cost in a simulated network of N nodes (virtual time).")

    @Option(help: "Nodes.") var nodes = 1000
    @Option(help: "Seed (keys, choices, the network's jitter and loss).") var seed: UInt64 = 7
    @Option(help: "Share of datagrams lost, 0...1.") var loss = 0.0
    @Option(help: "One-way latency, ms.") var latencyMs: UInt64 = 50
    @Option(help: "Latency jitter, ± ms.") var jitterMs: UInt64 = 20
    @Option(help: "Members a new record is pushed to per round.") var fanout = 3
    @Option(help: "Anti-entropy period, s.") var antiEntropyS: UInt64 = 300

    func run() throws {
        let wall = Date()
        var timings = GossipTimings.default
        timings.fanout = fanout
        timings.antiEntropy = .seconds(antiEntropyS)
        let net = NetworkModel(latency: .milliseconds(latencyMs), jitter: .milliseconds(jitterMs), loss: loss, seed: seed)
        let world = GossipWorld(nodes: nodes, timings: timings, network: net, seed: seed)
        let setup = Date().timeIntervalSince(wall)

        // 1. Steady state: two periods, nothing changes.
        let t0 = world.now
        let bytes0 = world.bytesSent
        world.run(until: t0 + timings.antiEntropy * 2)
        let steadySeconds = (world.now - t0).seconds
        let perNode = Double(world.bytesSent - bytes0) / Double(nodes) / steadySeconds

        // 2. Node 0's endpoint changes.
        var have = 1  // node 0 itself
        var seen = [Bool](repeating: false, count: nodes)
        seen[0] = true
        world.onDelivered = { j in
            if !seen[j], world.nodes[j].sequence(of: PeerID(rawValue: 0)) >= 2 {
                seen[j] = true
                have += 1
            }
        }
        let tc = world.now
        let bytesC = world.bytesSent
        world.publish(0, version: 2)
        let need99 = Int((Double(nodes) * 0.99).rounded(.up))
        var t99: Double?
        world.run(until: tc + timings.antiEntropy + .seconds(1 as UInt64)) {
            if t99 == nil, have >= need99 { t99 = (world.now - tc).seconds }
            return have == nodes
        }
        let tAll = have == nodes ? (world.now - tc).seconds : nil
        let changeBytes = world.bytesSent - bytesC
        let converged = tAll.map { $0 <= timings.antiEntropy.seconds } ?? false
        let elapsed = Date().timeIntervalSince(wall)

        print("gossip-sim: \(nodes) nodes, seed \(seed), loss \(loss), latency \(latencyMs) ± \(jitterMs) ms, fanout \(fanout), anti-entropy \(antiEntropyS) s")
        print("  steady state (\(Int(steadySeconds)) s, nothing changes): \(String(format: "%.2f", perNode)) bytes per node per second on the wire")
        print("  one endpoint change: 99% of nodes after \(t99.map { String(format: "%.3f", $0) } ?? "never") s, all after \(tAll.map { String(format: "%.3f", $0) } ?? "never (\(have) of \(nodes))") s; \(changeBytes) bytes in all (\(changeBytes / UInt64(nodes)) per node)")
        print("  wall time: \(String(format: "%.1f", elapsed)) s (setup \(String(format: "%.1f", setup)) s: keys, signatures)")
        func num(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "null" }
        print("{\"nodes\": \(nodes), \"fanout\": \(fanout), \"seconds_to_99pct\": \(num(t99)), \"seconds_to_all\": \(num(tAll)), \"bytes_per_node_per_s\": \(String(format: "%.2f", perNode)), \"converged\": \(converged)}")
    }
}
