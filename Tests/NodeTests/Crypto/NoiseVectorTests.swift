// The published Noise test vectors (cacophony format) against our Noise framework.
//
// Source: ../shared/vectors/noise-cacophony-subset.json, located from this file
// (repo root = three levels up; its parent holds shared/), else the copy in
// Tests/vectors/ (for a clone without shared/ beside it), or the file named by
// WS_NOISE_VECTORS (same format). Vectors of suites we do not implement (e.g.
// AESGCM, 448) are skipped and counted, never passed silently; zero vectors run is
// a failure, and so is a BLAKE2s vector skipped (BLAKE2s comes from libb2: the
// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s vector is WireGuard's Noise pattern).
//
// Each vector is played through to the end: the handshake messages (ciphertexts
// and payloads byte for byte, then the handshake hash), then the transport
// messages with the Split() ciphers, alternating sender as cacophony does (one-way
// patterns: initiator only). Every transport ciphertext is also reproduced with
// the data path's TransportKey, and opened in place by the receiving side's, so the
// in-place AEAD is tied to the vectors too.
//
// AESGCM: Tests/vectors/noise-cacophony-aesgcm.json holds cacophony's 25519 AESGCM
// vectors (NN NK KK IK XX, BLAKE2b and BLAKE2s; public domain test data, source in
// the file). They run in the same harness (`testCacophonyAESGCMVectors`): every one
// must run where libsodium has AES-GCM (AES-NI); without it the test is skipped, loudly.

import Foundation
import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

final class NoiseVectorTests: XCTestCase {
    struct VectorFile: Decodable { let vectors: [Vector] }
    struct Vector: Decodable {
        struct Message: Decodable { let payload: String; let ciphertext: String }
        let protocolName: String
        let initPrologue: String?
        let initEphemeral: String?
        let initStatic: String?
        let initRemoteStatic: String?
        let initPsks: [String]?
        let respPrologue: String?
        let respEphemeral: String?
        let respStatic: String?
        let respRemoteStatic: String?
        let respPsks: [String]?
        let handshakeHash: String?
        let messages: [Message]
    }

    enum Outcome { case ran, unsupportedSuite, unsupportedPattern }

    static var vectorsPath: String {
        if let path = ProcessInfo.processInfo.environment["WS_NOISE_VECTORS"], !path.isEmpty { return path }
        let repoRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // Crypto
            .deletingLastPathComponent()  // NodeTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // repo root
        let shared = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/vectors/noise-cacophony-subset.json").path
        if FileManager.default.fileExists(atPath: shared) { return shared }
        // A clone without shared/ beside it uses the copy committed with the tests (same file).
        return repoRoot.appendingPathComponent("Tests/vectors/noise-cacophony-subset.json").path
    }

    func testCacophonyAESGCMVectors() throws {
        guard NoiseCipher.aesGCM.isAvailable else {
            throw XCTSkip("this CPU has no AES-GCM in libsodium (AES-NI and PCLMULQDQ): AESGCM vectors not run")
        }
        let repoRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = repoRoot.appendingPathComponent("Tests/vectors/noise-cacophony-aesgcm.json").path
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path), "AESGCM vectors not found at \(path)")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let file = try decoder.decode(VectorFile.self, from: data)
        XCTAssertEqual(file.vectors.count, 10, "NN NK KK IK XX × BLAKE2b, BLAKE2s")
        var ran: [String] = []
        for vector in file.vectors {
            XCTAssertTrue(vector.protocolName.contains("_AESGCM_"), vector.protocolName)
            XCTAssertEqual(try run(vector), .ran, "\(vector.protocolName) must run")
            ran.append(vector.protocolName)
        }
        XCTAssertEqual(ran.count, file.vectors.count)
        print("Noise AESGCM vectors (\(path)): \(ran.count) run")
    }

    func testCacophonyVectors() throws {
        let path = Self.vectorsPath
        guard let data = FileManager.default.contents(atPath: path) else {
            XCTFail("Noise vectors not found at \(path): put shared/ beside the repository, or set WS_NOISE_VECTORS to a cacophony-format JSON file")
            return
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let file = try decoder.decode(VectorFile.self, from: data)

        var ran = 0, skippedSuite = 0, skippedPattern = 0, blake2sRan = 0
        for vector in file.vectors {
            switch try run(vector) {
            case .ran:
                ran += 1
                if vector.protocolName.hasSuffix("_BLAKE2s") { blake2sRan += 1 }
            case .unsupportedSuite: skippedSuite += 1
            case .unsupportedPattern: skippedPattern += 1
            }
        }
        var summary = "Noise vectors (\(path)): \(ran) run, \(skippedSuite) skipped (unsupported suite)"
        if skippedPattern > 0 { summary += ", \(skippedPattern) skipped (unsupported pattern)" }
        print(summary)
        XCTAssertGreaterThan(ran, 0, "no Noise vector ran: \(summary)")
        let blake2sListed = file.vectors.filter { $0.protocolName.hasSuffix("_BLAKE2s") }.count
        XCTAssertEqual(blake2sRan, blake2sListed, "every BLAKE2s vector runs (libb2): \(summary)")
    }

    func run(_ v: Vector) throws -> Outcome {
        do {
            _ = try NoiseProtocol(name: v.protocolName)
        } catch NoiseError.unsupportedSuite(_) {
            return .unsupportedSuite
        } catch {
            return .unsupportedPattern
        }
        let name = v.protocolName
        func bytes(_ s: String?) -> [UInt8]? { s.map { [UInt8](cryptoHex: $0) } }
        func pair(_ s: String?) -> DHKeyPair? { bytes(s).flatMap { DHKeyPair(privateKey: $0) } }

        var initiator = try NoiseHandshakeState(
            protocolName: name, role: .initiator, prologue: bytes(v.initPrologue) ?? [],
            localStatic: pair(v.initStatic), remoteStatic: bytes(v.initRemoteStatic),
            psks: (v.initPsks ?? []).map { SecretBytes(copying: [UInt8](cryptoHex: $0)) }, fixedEphemeral: pair(v.initEphemeral))
        var responder = try NoiseHandshakeState(
            protocolName: name, role: .responder, prologue: bytes(v.respPrologue) ?? [],
            localStatic: pair(v.respStatic), remoteStatic: bytes(v.respRemoteStatic),
            psks: (v.respPsks ?? []).map { SecretBytes(copying: [UInt8](cryptoHex: $0)) }, fixedEphemeral: pair(v.respEphemeral))

        var index = 0
        // Handshake phase.
        while !initiator.isComplete {
            guard index < v.messages.count else {
                XCTFail("\(name): vector ends inside the handshake")
                return .ran
            }
            let m = v.messages[index]
            let payload = [UInt8](cryptoHex: m.payload)
            let sent: [UInt8], received: [UInt8]
            if index % 2 == 0 {
                sent = try initiator.writeMessage(payload: payload)
                received = try responder.readMessage(sent)
            } else {
                sent = try responder.writeMessage(payload: payload)
                received = try initiator.readMessage(sent)
            }
            XCTAssertEqual(sent.cryptoHexString, m.ciphertext, "\(name): handshake message \(index) ciphertext")
            XCTAssertEqual(received, payload, "\(name): handshake message \(index) payload")
            index += 1
        }
        XCTAssertTrue(responder.isComplete, "\(name): responder not complete")
        if let hash = v.handshakeHash {
            XCTAssertEqual(initiator.handshakeHash.cryptoHexString, hash, "\(name): initiator handshake hash")
            XCTAssertEqual(responder.handshakeHash.cryptoHexString, hash, "\(name): responder handshake hash")
        }

        // Transport phase.
        var (i1, i2) = try initiator.split()
        var (r1, r2) = try responder.split()
        let oneWay = initiator.noiseProtocol.pattern.isOneWay
        while index < v.messages.count {
            let m = v.messages[index]
            let payload = [UInt8](cryptoHex: m.payload)
            let fromInitiator = oneWay || index % 2 == 0
            let key = (fromInitiator ? i1 : r2).transportKey
            let counter = (fromInitiator ? i1 : r2).nonce
            let sent: [UInt8], received: [UInt8]
            if fromInitiator {
                sent = try i1.encrypt(plaintext: payload)
                received = try r1.decrypt(ciphertext: sent)
            } else {
                sent = try r2.encrypt(plaintext: payload)
                received = try i2.decrypt(ciphertext: sent)
            }
            XCTAssertEqual(sent.cryptoHexString, m.ciphertext, "\(name): transport message \(index) ciphertext")
            XCTAssertEqual(received, payload, "\(name): transport message \(index) payload")

            // The data path's in-place AEAD must produce the same bytes.
            if let key, let receiver = (fromInitiator ? r1 : i2).transportKey {
                XCTAssertEqual(key.cipher, initiator.noiseProtocol.cipher, "\(name): the transport key's cipher")
                var buffer = payload + [UInt8](repeating: 0, count: 16)
                buffer.withUnsafeMutableBytes { key.seal(counter: counter, buffer: $0.baseAddress!, length: payload.count) }
                XCTAssertEqual(buffer.cryptoHexString, m.ciphertext, "\(name): TransportKey seal of message \(index)")
                let opened = buffer.withUnsafeMutableBytes { receiver.open(counter: counter, buffer: $0.baseAddress!, length: $0.count) }
                XCTAssertTrue(opened, "\(name): TransportKey open of message \(index)")
                XCTAssertEqual(Array(buffer.prefix(payload.count)), payload, "\(name): TransportKey open of message \(index)")
            } else {
                XCTFail("\(name): no transport key after split")
            }
            index += 1
        }
        return .ran
    }
}
