import Support
import Wire
import Crypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keys as they appear in configuration: standard base64 (RFC 4648 §4, with
/// padding) of exactly 32 bytes, as `wsctl genkey` and `wg genkey` print them.
///
/// Config only checks the text and keeps it; Crypto turns it into a key. The
/// check is strict on purpose: 44 characters, '=' last, and the two unused
/// bits of the last character zero, so one key has exactly one spelling and
/// comparing two keys as text is comparing them as bytes.
enum KeyText {
    static let encodedLength = 44

    static func isValid(_ text: String) -> Bool { decode(text) != nil }

    /// The 32 bytes, or nil unless `text` is their canonical base64.
    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count == encodedLength, chars[43] == UInt8(ascii: "=") else { return nil }
        var sextets: [UInt8] = []
        sextets.reserveCapacity(43)
        for c in chars[..<43] {
            guard let v = sextet(c) else { return nil }
            sextets.append(v)
        }
        // 43 sextets = 258 bits: 256 of key, then 2 that must be zero.
        guard sextets[42] & 0b11 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var acc: UInt32 = 0
        var bits = 0
        for s in sextets {
            acc = (acc << 6) | UInt32(s)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out.count == 32 ? out : nil
    }

    private static func sextet(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }
}

/// A small file read whole, with the mode bits of the file that was opened
/// (fstat on the open descriptor, so the mode belongs to the bytes read).
struct SmallFile {
    var bytes: [UInt8]
    var mode: UInt32

    /// Reads a regular file of at most `limit` bytes. The error is a
    /// sentence fragment for a config error ("No such file or directory").
    static func load(_ path: String, limit: Int) -> Result<SmallFile, SmallFileError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return .failure(.errno(errno)) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.errno(errno)) }
        // A FIFO or /dev/zero given by mistake would block or never end.
        guard UInt32(st.st_mode) & UInt32(S_IFMT) == UInt32(S_IFREG) else { return .failure(.notRegular) }
        guard Int(st.st_size) <= limit else { return .failure(.tooLarge(limit)) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(.errno(errno))
            }
            if n == 0 { break }
            bytes += chunk[..<n]
            // The file may have grown since fstat.
            if bytes.count > limit { return .failure(.tooLarge(limit)) }
        }
        return .success(SmallFile(bytes: bytes, mode: UInt32(st.st_mode) & 0o7777))
    }
}

enum SmallFileError: Error, CustomStringConvertible {
    case errno(Int32)
    case notRegular
    case tooLarge(Int)

    var description: String {
        switch self {
        case .errno(let e): return String(cString: strerror(e))
        case .notRegular: return "not a regular file"
        case .tooLarge(let n): return "larger than \(n) bytes"
        }
    }
}
