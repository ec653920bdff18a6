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
        .library(name: "Node", targets: ["Node"]),
        .library(name: "Reactor", targets: ["Reactor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // Debian's libraries, linked as system modules.
        .systemLibrary(name: "CSodium", path: "Sources/CSodium"),
        .systemLibrary(name: "CMiniUPnPc", path: "Sources/CMiniUPnPc"),
        .systemLibrary(name: "CNATPMP", path: "Sources/CNATPMP"),

        // The thin C shim: one function per syscall idea, every symbol CReactor_…, no policy.
        .target(
            name: "CReactor",
            path: "Sources/CReactor",
            cSettings: gnu + [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("uring")]
        ),
        // The per-core event loop. Knows nothing of Whalescale's protocols.
        .target(
            name: "Reactor",
            dependencies: [
                "CReactor",
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            path: "Sources/Reactor",
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        // The node: wire formats, crypto, sans-IO protocol state machines, config, control, engine.
        .target(
            name: "Node",
            dependencies: [
                "Reactor", "CSodium", "CMiniUPnPc", "CNATPMP",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            path: "Sources/Node"
        ),
        .executableTarget(
            name: "whalescaled",
            dependencies: [
                "Node",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/whalescaled"
        ),
        .executableTarget(
            name: "wsctl",
            dependencies: [
                "Node",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/wsctl"
        ),
        // Benchmarks driven by perf/ scripts (never timed tests).
        .executableTarget(
            name: "ws-bench",
            dependencies: [
                "Node", "Reactor", "CReactor", "CSodium",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/ws-bench"
        ),
        .testTarget(name: "ReactorTests", dependencies: ["Reactor", "CReactor"], path: "Tests/ReactorTests"),
        .testTarget(name: "NodeTests", dependencies: ["Node", "CSodium"], path: "Tests/NodeTests"),
    ],
    swiftLanguageModes: [.v6]
)
