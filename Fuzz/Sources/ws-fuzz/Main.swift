// ws-fuzz: libFuzzer harnesses for every parser and the node's receive path
// (security review 60ee9cd, Part C.2 and C.3 S1). One binary, the target named
// by the first argument; libFuzzer's own flags and corpus paths follow it.
//
//   ws-fuzz TARGET [libFuzzer flags] [corpus dirs or files]   built with -DFUZZING (perf/fuzz)
//   ws-fuzz TARGET FILE...                                   any build: run each file once
//   ws-fuzz --list                                           the target names
//   ws-fuzz --seeds DIR [TARGET...]                          write DIR/<target>/<seed> (the seed corpus)
//
// Oracles are preconditions: a broken property is a crash libFuzzer reports
// and saves, like any other. Every harness must be deterministic for a given
// input within one process (state prepared once at start, copied per input).
//
// Built for fuzzing, libFuzzer's own main runs; LLVMFuzzerInitialize below takes
// the target name out of argv before libFuzzer reads its flags.
import Foundation

/// One fuzz target: a name, the function run on each input, and its seeds.
struct FuzzTarget: @unchecked Sendable {
    let name: String
    let summary: String
    let run: ([UInt8]) -> Void
    let seeds: () -> [[UInt8]]
}

let allTargets: [FuzzTarget] = wireTargets + cryptoTargets + wireGuardTargets + offloadTargets + textTargets + nodeTargets + lanTargets

/// The target chosen for this process (libFuzzer's callback is a C function pointer: no context).
nonisolated(unsafe) var selected: FuzzTarget?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    guard let selected else { fatalError("no target: ws-fuzz TARGET ...") }
    selected.run(bytes)
    return 0
}

/// A fatal property violation, reported by libFuzzer as a crash with its input saved.
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("oracle: \(message())", file: file, line: line) }
}

/// Reads structured values off the front of a fuzz input (FuzzedDataProvider's idea):
/// short reads give zeros, so every input means something.
struct FuzzReader {
    var bytes: [UInt8]
    var at = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var isEmpty: Bool { at >= bytes.count }
    var remaining: Int { max(0, bytes.count - at) }
    mutating func u8() -> UInt8 {
        defer { at += 1 }
        return at < bytes.count ? bytes[at] : 0
    }
    mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    mutating func u64() -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(u8()) << (8 * UInt64($1)) } }
    mutating func take(_ n: Int) -> [UInt8] {
        let n = max(0, min(n, remaining))
        guard n > 0 else { return [] }
        defer { at += n }
        return Array(bytes[at..<(at + n)])
    }
    mutating func rest() -> [UInt8] { take(remaining) }
}

#if FUZZING
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>,
                           _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let args = (0..<Int(argc.pointee)).map { String(cString: argv.pointee![$0]!) }
    guard args.count >= 2 else { WSFuzz.usage() }
    if WSFuzz.command(args) { exit(0) }
    guard let target = allTargets.first(where: { $0.name == args[1] }) else { WSFuzz.usage() }
    selected = target
    // Drop argv[1] (the target name): libFuzzer would take it for a corpus directory.
    let v = argv.pointee!
    for i in 1..<Int(argc.pointee) { v[i] = v[i + 1] }
    argc.pointee -= 1
    return 0
}
#else
@main
struct WSFuzzMain {
    static func main() {
        let args = CommandLine.arguments
        guard args.count >= 2 else { WSFuzz.usage() }
        if WSFuzz.command(args) { return }
        guard let target = allTargets.first(where: { $0.name == args[1] }) else { WSFuzz.usage() }
        // Without libFuzzer: run each file (or every file of each directory) once.
        var count = 0
        for path in args.dropFirst(2) {
            for file in WSFuzz.files(at: path) {
                guard let data = FileManager.default.contents(atPath: file) else { fatalError("cannot read \(file)") }
                target.run(Array(data))
                count += 1
            }
        }
        print("\(target.name): \(count) inputs, no failure")
    }
}
#endif

enum WSFuzz {
    /// --list and --seeds; true when `args` was one of them.
    static func command(_ args: [String]) -> Bool {
        if args[1] == "--list" {
            for t in allTargets { print("\(t.name)\t\(t.summary)") }
            return true
        }
        if args[1] == "--seeds", args.count >= 3 {
            writeSeeds(to: args[2], only: Set(args.dropFirst(3)))
            return true
        }
        return false
    }

    static func usage() -> Never {
        let names = allTargets.map(\.name).joined(separator: " ")
        FileHandle.standardError.write(Data("usage: ws-fuzz TARGET [libFuzzer args | files] | --list | --seeds DIR [TARGET...]\ntargets: \(names)\n".utf8))
        exit(2)
    }

    static func files(at path: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return [] }
        guard isDir.boolValue else { return [path] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.sorted().filter { !$0.hasPrefix(".") }.map { path + "/" + $0 }
    }

    /// Writes each target's (or the named targets') seeds as DIR/<target>/seed-NNN (replacing what is there).
    static func writeSeeds(to dir: String, only: Set<String>) {
        for t in allTargets where only.isEmpty || only.contains(t.name) {
            let d = dir + "/" + t.name
            try? FileManager.default.removeItem(atPath: d)
            try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            let seeds = t.seeds()
            for (i, s) in seeds.enumerated() {
                t.run(s)  // every seed must pass its own oracle
                _ = FileManager.default.createFile(atPath: d + "/" + String(format: "seed-%03d", i), contents: Data(s))
            }
            print("\(t.name): \(seeds.count) seeds")
        }
    }
}
