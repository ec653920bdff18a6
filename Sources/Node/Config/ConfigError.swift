import Support
import Wire
import Crypto

/// A configuration problem, located for a human: file, line, the field's path
/// as written in the error (`node.address`, `peer[1].address[0]`), and what is
/// wrong with it.
///
///     config.toml:12: peer[1].address: "10.77.0.300/32" is not a valid CIDR: ...
///
/// Peers are numbered from 0 in the order their `[[peer]]` tables appear.
/// `line` is nil when there is no line to point at (a missing `[node]` table,
/// an unreadable file); `column` is set only for TOML syntax errors.
/// Secrets are never quoted back: a bad `private_key` is named, not shown.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var line: Int?
    public var column: Int?
    /// Empty for whole-file problems (syntax, I/O).
    public var field: String
    public var message: String

    public init(path: String, line: Int?, column: Int? = nil, field: String, message: String) {
        self.path = path
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    public var description: String {
        var s = path
        if let line {
            s += ":\(line)"
            if let column { s += ":\(column)" }
        }
        s += ": "
        if !field.isEmpty { s += field + ": " }
        return s + message
    }
}
