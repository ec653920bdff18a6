import Support
import Wire
import Crypto

/// Which line each key of a TOML document is written on.
///
/// TOMLKit gives positions only for syntax errors, but a validation error is
/// useless without a line. This scanner reads the text a second time, after
/// TOMLKit accepted it, and records for every field path the line where it
/// first appears, using the same names as `ConfigError.field`:
///
///     [node]                    "node"            (header line)
///     address = "10.77.0.1/24"  "node.address"
///     [[peer]]                  "peer", "peer[0]"
///     address = [               "peer[0].address"
///       "10.77.0.10/32",        "peer[0].address[0]"
///     ]
///     peer = [{ name = "a" }]   "peer", "peer[0]", "peer[0].name"
///
/// It knows just enough TOML to not be fooled: comments, the four string
/// kinds (a '#' or '=' or newline inside a string is not structure), dotted and
/// quoted keys, arrays and inline tables over several lines. It never fails:
/// on text it does not understand it skips to the next line, and every step
/// advances, so odd input costs a worse line number, never a hang.
struct SourceLines {
    private var lines: [String: Int]
    /// The first `[table]` header whose key does not start with a bare-key
    /// character or a quote (`[é]`, `[=]`): TOMLKit's toml++ asserts on those
    /// instead of reporting them (an abort in a release build), so `Config`
    /// refuses them before handing the text over.
    let badHeaderLine: Int?
    /// The first '}' where an array expects a value or ']' (`p = [1, }`):
    /// toml++ asserts on it too (found by the `config` fuzz target), so it is
    /// refused the same way.
    let braceInArrayLine: Int?

    init(_ text: String) {
        var s = LineScanner(Array(text.utf8))
        s.run()
        lines = s.found
        badHeaderLine = s.badHeader
        braceInArrayLine = s.braceInArray
    }

    /// The line of `field`, else of its closest written parent: a missing
    /// `peer[1].name` is reported on the `[[peer]]` header line.
    func line(of field: String) -> Int? {
        var f = Substring(field)
        while !f.isEmpty {
            if let l = lines[String(f)] { return l }
            f = SourceLines.parent(of: f)
        }
        return nil
    }

    /// "a.b[2]" → "a.b" → "a" → "".
    static func parent(of f: Substring) -> Substring {
        if f.last == "]", let open = f.lastIndex(of: "[") { return f[..<open] }
        if let dot = f.lastIndex(of: ".") { return f[..<dot] }
        return ""
    }
}

private struct LineScanner {
    private let b: [UInt8]
    private var i = 0
    private var line = 1
    private(set) var found: [String: Int] = [:]
    private(set) var badHeader: Int?
    private(set) var braceInArray: Int?
    /// Resolved path of the current `[table]`; "" at the root.
    private var table = ""
    /// How many `[[x]]` headers each array-of-tables path has had so far.
    private var arrayCounts: [String: Int] = [:]

    init(_ bytes: [UInt8]) {
        b = bytes
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }  // UTF-8 byte order mark
    }

    mutating func run() {
        while let c = peek() {
            switch c {
            case .space, .tab, .cr: i += 1
            case .newline: line += 1; i += 1
            case .hash: skipToEndOfLine()
            case .openBracket: header()
            default: keyValue()
            }
        }
    }

    // MARK: Structure

    /// `[a.b]` or `[[a.b]]`. A path component that is an array of tables
    /// refers to its latest element, as in TOML: after the second `[[peer]]`,
    /// `[peer.x]` is "peer[1].x".
    private mutating func header() {
        let at = line
        let isArray = peek(1) == .openBracket
        i += isArray ? 2 : 1
        // toml++ skips spaces and tabs here (a lone CR is not whitespace to it), then needs a key.
        var k = 0
        while let c = peek(k), c == .space || c == .tab { k += 1 }
        if let c = peek(k), !(Self.isBare(c) || c == .quote || c == .apostrophe || c == .closeBracket),
           badHeader == nil {
            badHeader = at
        }
        let comps = keyPath()
        var resolved = ""
        for (k, comp) in comps.enumerated() {
            resolved = resolved.isEmpty ? comp : resolved + "." + comp
            if isArray && k == comps.count - 1 {
                let n = arrayCounts[resolved, default: 0]
                arrayCounts[resolved] = n + 1
                record(resolved, at)
                resolved += "[\(n)]"
            } else if let n = arrayCounts[resolved] {
                resolved += "[\(n - 1)]"
            }
        }
        record(resolved, at)
        table = resolved
        skipToEndOfLine()  // the closing bracket(s) and any trailing comment
    }

    /// `key = value` in the current table; `a.b = 1` also records "a".
    private mutating func keyValue() {
        let at = line
        let comps = keyPath()
        guard peek() == .equals else {
            skipToEndOfLine()  // not a key line: only in text TOMLKit rejected
            return
        }
        i += 1
        let path = recordKey(comps, under: table, at: at)
        value(path)
    }

    private mutating func value(_ path: String) {
        skipBlank()
        guard let c = peek() else { return }
        switch c {
        case .quote, .apostrophe: skipString()
        case .openBracket: array(path)
        case .openBrace: inlineTable(path)
        default:
            // Numbers, booleans, dates ("1979-05-27 07:32:00" has a space).
            while let c = peek(), c != .comma, c != .closeBracket, c != .closeBrace, c != .newline, c != .hash {
                i += 1
            }
        }
    }

    private mutating func array(_ path: String) {
        i += 1
        var n = 0
        while true {
            skipBlankLinesAndComments()
            guard let c = peek() else { return }
            if c == .closeBracket { i += 1; return }
            if c == .comma { i += 1; continue }
            if c == .closeBrace, braceInArray == nil { braceInArray = line }
            let element = "\(path)[\(n)]"
            record(element, line)
            let before = i
            value(element)
            n += 1
            if i == before { i += 1 }
        }
    }

    private mutating func inlineTable(_ path: String) {
        i += 1
        while true {
            skipBlankLinesAndComments()
            guard let c = peek() else { return }
            if c == .closeBrace { i += 1; return }
            if c == .comma { i += 1; continue }
            let at = line
            let before = i
            let comps = keyPath()
            guard peek() == .equals else {
                if i == before { i += 1 }
                continue
            }
            i += 1
            value(recordKey(comps, under: path, at: at))
        }
    }

    /// Records "t.a" and "t.a.b" for `a.b` under table "t"; returns the full path.
    private mutating func recordKey(_ comps: [String], under prefix: String, at: Int) -> String {
        var path = prefix
        for comp in comps {
            path = path.isEmpty ? comp : path + "." + comp
            record(path, at)
        }
        return path
    }

    /// Dotted key components, bare or quoted (quotes removed, escapes kept:
    /// good enough to match the simple keys a config uses). Stops before
    /// '=', ']' or anything else that is not part of a key.
    private mutating func keyPath() -> [String] {
        var comps: [String] = []
        while true {
            skipBlank()
            guard let c = peek() else { break }
            if c == .quote || c == .apostrophe {
                let start = i + 1
                skipString()
                let end = max(start, i - 1)
                comps.append(String(decoding: b[start..<min(end, b.count)], as: UTF8.self))
            } else if LineScanner.isBare(c) {
                let start = i
                while let c = peek(), LineScanner.isBare(c) { i += 1 }
                comps.append(String(decoding: b[start..<i], as: UTF8.self))
            } else {
                break
            }
            skipBlank()
            guard peek() == .dot else { break }
            i += 1
        }
        return comps
    }

    // MARK: Lexing

    /// Skips a basic ("..."), literal ('...') or multi-line ("""...""", '''...''')
    /// string starting at `i`, counting the newlines inside.
    private mutating func skipString() {
        let q = b[i]
        let escapes = q == .quote
        if peek(1) == q && peek(2) == q {
            i += 3
            while let c = peek() {
                if c == .newline { line += 1 }
                if escapes && c == .backslash {
                    if peek(1) == .newline { line += 1 }
                    i += 2
                    continue
                }
                if c == q && peek(1) == q && peek(2) == q {
                    i += 3
                    // Up to two more quotes belong to the content: """a""""" ends after five.
                    var extra = 0
                    while extra < 2, peek() == q { i += 1; extra += 1 }
                    return
                }
                i += 1
            }
        } else {
            i += 1
            while let c = peek() {
                if c == .newline { return }  // unterminated: leave the newline to be counted
                i += 1
                if escapes && c == .backslash {
                    if peek() != .newline { i += 1 }
                    continue
                }
                if c == q { return }
            }
        }
    }

    private mutating func skipBlank() {
        while let c = peek(), c == .space || c == .tab || c == .cr { i += 1 }
    }

    private mutating func skipBlankLinesAndComments() {
        while let c = peek() {
            switch c {
            case .space, .tab, .cr: i += 1
            case .newline: line += 1; i += 1
            case .hash: skipToEndOfLine()
            default: return
            }
        }
    }

    /// Up to (not past) the next newline, so `run` counts it.
    private mutating func skipToEndOfLine() {
        while let c = peek(), c != .newline { i += 1 }
    }

    private func peek(_ k: Int = 0) -> UInt8? { i + k < b.count ? b[i + k] : nil }

    private mutating func record(_ path: String, _ at: Int) {
        if found[path] == nil { found[path] = at }
    }

    private static func isBare(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == .underscore || c == .dash
    }
}

private extension UInt8 {
    static let tab: UInt8 = 0x09
    static let newline: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let hash: UInt8 = 0x23
    static let apostrophe: UInt8 = 0x27
    static let comma: UInt8 = 0x2C
    static let dash: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let equals: UInt8 = 0x3D
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let underscore: UInt8 = 0x5F
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
}
