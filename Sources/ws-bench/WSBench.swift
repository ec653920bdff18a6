// ws-bench: the benchmarks behind perf/ (never timed tests). Each prints a table
// of figures measured in one run, with ratios to a baseline from the same run.
import ArgumentParser

@main
struct WSBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ws-bench",
        abstract: "Whalescale micro-benchmarks (see perf/).",
        subcommands: [ReactorEcho.self, CryptoBench.self, RelayBaseline.self, GossipSim.self, Flood.self, LinkEmu.self])
}
