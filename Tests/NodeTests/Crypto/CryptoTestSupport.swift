// Small helpers shared by the Crypto tests (prefixed to stay clear of other test files' helpers).

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

extension Array where Element == UInt8 {
    /// Bytes from a hex string; fails the test on bad hex.
    init(cryptoHex text: String, file: StaticString = #filePath, line: UInt = #line) {
        let chars = Array(text.utf8)
        var out: [UInt8] = []
        guard chars.count % 2 == 0 else {
            XCTFail("odd-length hex", file: file, line: line)
            self = []
            return
        }
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let b = UInt8(String(decoding: chars[i..<(i + 2)], as: UTF8.self), radix: 16) else {
                XCTFail("bad hex \(text)", file: file, line: line)
                self = []
                return
            }
            out.append(b)
        }
        self = out
    }

    var cryptoHexString: String { map { String(format: "%02x", $0) }.joined() }
}

/// A fixed Ed25519 identity from a one-byte pattern, so failures are reproducible.
func cryptoTestIdentity(_ fill: UInt8) -> Identity {
    Identity(secret: SecretKey(bytes: [UInt8](repeating: fill, count: 32))!)
}

/// An X25519 key pair from a one-byte pattern (the tests' fixed ephemerals).
func cryptoTestKeyPair(_ fill: UInt8) -> DHKeyPair {
    DHKeyPair(privateKey: [UInt8](repeating: fill, count: 32))!
}

/// A 12-byte TAI64N-shaped timestamp.
func cryptoTestTimestamp(_ seconds: UInt64) -> [UInt8] {
    let tai = 0x4000_0000_0000_000A &+ seconds
    return (0..<8).map { UInt8(truncatingIfNeeded: tai >> (56 - 8 * UInt64($0))) } + [0, 0, 0, 0]
}
