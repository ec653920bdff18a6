// swift-tools-version:6.0
// Whalescale: a peer-to-peer mesh VPN. Layout and contracts: DESIGN.md (docs/ and ../shared/DESIGN.md).
import PackageDescription

// _GNU_SOURCE for the shim (recvmmsg, sendmmsg, struct in6_pktinfo, ...), defined by the package, not per file.
let gnu: [CSetting] = [.define("_GNU_SOURCE")]

let package = Package(
    name: "Whalescale",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "whalescaled", targets: ["whalescaled"]),
        .executable(name: "wsctl", targets: ["wsctl"]),
        .executable(name: "ws-bench", targets: ["ws-bench"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Reactor", targets: ["Reactor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // System libraries, linked as system modules.
        // libsodium through pkg-config: scripts/libsodium installs 1.0.20 as a static library in
        // /usr/local (its libsodium.pc adds -L/usr/local/lib/<arch>); without it, Debian's 1.0.18.
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium"),
        // BLAKE2s for WireGuard's handshake (libsodium has only BLAKE2b): Debian's libb2. Not through
        // pkg-config: libb2.pc adds -L/usr/lib/<arch> ahead of libsodium's -L, and -lsodium would
        // then find Debian's shared 1.0.18 there.
        .systemLibrary(name: "CBlake2", path: "Sources/CBlake2"),
        .systemLibrary(name: "CMiniUPnPc", path: "Sources/CMiniUPnPc"),
        .systemLibrary(name: "CNATPMP", path: "Sources/CNATPMP"),

        // The thin C shim: one function per syscall idea, every symbol CReactor_…, no policy.
        .target(
            name: "CReactor",
            path: "Sources/CReactor",
            cSettings: gnu + [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("uring")]
        ),
        // The per-core event loop and the TUN offloads (virtio header, TSO/GSO split, GRO coalescing).
        // Knows nothing of Whalescale's protocols.
        .target(
            name: "Reactor",
            dependencies: [
                "CReactor",
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            path: "Sources/Reactor"
        ),

        // The node, one target per layer so the compiler keeps the arrows one way
        // (docs/DESIGN.md draws the graph). Nothing below Engine imports Reactor or CReactor.
        //
        //   Support <- Wire <- Crypto <- Protocol <- Control
        //                         ^---- Config       ^
        //   Reactor <------------------------------ Engine <- whalescaled
        //
        // Support: time values and small helpers shared by every layer.
        .target(name: "Support", path: "Sources/Node/Support"),
        // Wire: byte layouts, parse + serialize, no state.
        .target(name: "Wire", dependencies: ["Support"], path: "Sources/Node/Wire"),
        // Crypto: the only code that calls libsodium.
        .target(name: "Crypto", dependencies: ["Support", "Wire", "CSodium", "CBlake2"], path: "Sources/Node/Crypto"),
        // Protocol: sans-IO state machines (no file descriptor, no clock, no thread).
        .target(name: "Protocol", dependencies: ["Support", "Wire", "Crypto"], path: "Sources/Node/Protocol"),
        // Config: TOML text -> validated values, errors with lines.
        .target(
            name: "Config",
            dependencies: ["Support", "Wire", "Crypto", .product(name: "TOMLKit", package: "TOMLKit")],
            path: "Sources/Node/Config"
        ),
        // Control: the control socket's requests and answers, and the status model.
        .target(name: "Control", dependencies: ["Support", "Wire", "Crypto", "Protocol"], path: "Sources/Node/Control"),
        // Simulation: a modelled network (latency, jitter, loss, partitions, churn) and a virtual
        // clock driving the real protocol machines, for tests and perf/ (never the daemon).
        .target(name: "Simulation", dependencies: ["Support", "Wire", "Crypto", "Protocol"], path: "Sources/Simulation"),
        // Engine: the only part of the node that imports Reactor: lanes, the core's driver, I/O adapters.
        .target(
            name: "Engine",
            dependencies: [
                "Support", "Wire", "Crypto", "Protocol", "Config", "Control", "Reactor",
                "CMiniUPnPc", "CNATPMP",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Node/Engine"
        ),
        .executableTarget(
            name: "whalescaled",
            dependencies: [
                "Engine", "Config", "Crypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/whalescaled"
        ),
        .executableTarget(
            name: "wsctl",
            dependencies: [
                "Control", "Crypto", "Reactor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/wsctl"
        ),
        // Benchmarks driven by perf/ scripts (never timed tests).
        .executableTarget(
            name: "ws-bench",
            dependencies: [
                "Engine", "Config", "Control", "Protocol", "Crypto", "Wire", "Support", "Simulation", "Reactor", "CReactor", "CSodium",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/ws-bench"
        ),
        // libFuzzer harnesses (Fuzz/README.md): one binary, the target named by its first argument.
        // A normal build replays files; `perf/fuzz` builds it with --sanitize fuzzer,address -DFUZZING
        // in .build-fuzz, where libFuzzer's main runs it.
        .executableTarget(
            name: "ws-fuzz",
            dependencies: ["Support", "Wire", "Crypto", "Protocol", "Config", "Control", "Reactor"],
            path: "Fuzz/Sources/ws-fuzz"
        ),
        .testTarget(name: "ReactorTests", dependencies: ["Reactor", "CReactor"], path: "Tests/ReactorTests"),
        .testTarget(
            name: "NodeTests",
            dependencies: ["Support", "Wire", "Crypto", "Protocol", "Config", "Control", "Engine", "Simulation", "Reactor", "CSodium"],
            path: "Tests/NodeTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
