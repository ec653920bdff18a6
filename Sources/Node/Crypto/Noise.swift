// The Noise Protocol Framework (revision 34), for DH = 25519, cipher = ChaChaPoly
// or AESGCM (AES-256-GCM, only where libsodium has it: AES-NI), hash = BLAKE2b or BLAKE2s. Primitives come from libsodium (Sodium.swift) and,
// for BLAKE2s, Debian's libb2 (Blake2s.swift); the state machines
// below are a direct transcription of the spec's sections, which are quoted where
// a rule is implemented.
//
//     NoiseHandshakeState ── owns ──> NoiseSymmetricState ── owns ──> NoiseCipherState
//       s, e, rs, re, psks         ck, h                       k, n
//       message patterns            MixKey/MixHash/...          EncryptWithAd/DecryptWithAd
//                 └── Split() ──> (NoiseCipherState initiator→responder, NoiseCipherState responder→initiator)
//
// Supported handshake patterns: the one-way N, K, X and the twelve fundamental
// interactive patterns (NN NK NX KN KK KX XN XK XX IN IK IX), each with any psk
// modifiers ("IKpsk2", "XXpsk0+psk3"). Deferred and fallback patterns are not.
//
// Error handling: every failure is a thrown `NoiseError`; nothing traps on input.
// `writeMessage`/`readMessage` work on a copy of the state and commit it only
// when the whole message succeeded, so a bad message leaves the state untouched
// and the caller may go on waiting for a good one.
//
// Secrets (ck, k, private keys, psks, DH outputs) live in `SecretBytes`, wiped
// when released; HMAC pads and hash states are wiped in Sodium.swift.

import Support
import Wire

/// Why a Noise operation failed.
public enum NoiseError: Error, Equatable, Sendable {
    /// DH, cipher or hash we do not implement (e.g. SHA256, 448), or AESGCM on a CPU without AES-NI.
    case unsupportedSuite(String)
    /// A pattern or modifier we do not implement, or a malformed protocol name.
    case unsupportedPattern(String)
    /// A key the pattern needs was not given (e.g. "rs" for IK's initiator), or has the wrong length.
    case missingKey(String)
    /// psks given do not match the pattern's psk tokens, or one is not 32 bytes.
    case badPSK
    /// writeMessage when it is the peer's turn, or readMessage when it is ours.
    case notOurTurn
    case handshakeAlreadyComplete
    case handshakeNotComplete
    /// A message shorter than its tokens need.
    case messageTooShort
    /// Noise messages are at most 65535 bytes (§3).
    case messageTooLong
    /// AEAD authentication failed.
    case decryptionFailed
    /// The peer's public key has small order: DH gave all zeros.
    case invalidPublicKey
    /// The nonce reached 2^64-1, which Noise reserves (§5.1).
    case nonceExhausted
}

/// Noise's maximum message length (§3).
public let noiseMaxMessageLength = 65535
let noiseDHLength = 32
let noiseTagLength = 16

// MARK: - Cipher functions (§12.3, §12.4)

/// The AEAD of a Noise protocol name, and of a data-path `TransportKey`.
public enum NoiseCipher: UInt8, Sendable, Equatable, CaseIterable {
    /// "ChaChaPoly": ChaCha20-Poly1305 (IETF), nonce 32 zero bits || n as 64-bit little-endian.
    case chachaPoly = 0
    /// "AESGCM": AES-256-GCM, nonce 32 zero bits || n as 64-bit big-endian. Only where
    /// `Sodium.aesGCMAvailable` (libsodium has no portable AES-GCM).
    case aesGCM = 1

    /// The name in a Noise protocol name ("ChaChaPoly", "AESGCM").
    public var noiseName: String {
        switch self {
        case .chachaPoly: "ChaChaPoly"
        case .aesGCM: "AESGCM"
        }
    }

    /// The name `wsctl status` and the status JSON show ("chacha20poly1305", "aes256gcm").
    public var statusName: String {
        switch self {
        case .chachaPoly: "chacha20poly1305"
        case .aesGCM: "aes256gcm"
        }
    }

    /// True when this process can use the cipher (AES-GCM needs AES-NI).
    public var isAvailable: Bool {
        switch self {
        case .chachaPoly: true
        case .aesGCM: Sodium.aesGCMAvailable
        }
    }

    init?(noiseName: Substring) {
        switch noiseName {
        case "ChaChaPoly": self = .chachaPoly
        case "AESGCM": self = .aesGCM
        default: return nil
        }
    }

    /// ENCRYPT(k, n, ad, plaintext).
    func encrypt(key: SecretBytes, nonce: UInt64, ad: some ByteView, plaintext: some ByteView) -> [UInt8] {
        switch self {
        case .chachaPoly: Sodium.chachaPolySeal(key: key, nonce: nonce, ad: ad, plaintext: plaintext)
        case .aesGCM: Sodium.aesGCMSeal(key: key, nonce: nonce, ad: ad, plaintext: plaintext)
        }
    }

    /// DECRYPT(k, n, ad, ciphertext); nil on authentication failure.
    func decrypt(key: SecretBytes, nonce: UInt64, ad: some ByteView, ciphertext: some ByteView) -> [UInt8]? {
        switch self {
        case .chachaPoly: Sodium.chachaPolyOpen(key: key, nonce: nonce, ad: ad, ciphertext: ciphertext)
        case .aesGCM: Sodium.aesGCMOpen(key: key, nonce: nonce, ad: ad, ciphertext: ciphertext)
        }
    }
}

// MARK: - NoiseCipherState (§5.1)

/// k and n. Without a key, encryption is the identity (as the spec defines it).
public struct NoiseCipherState: Sendable {
    var key: SecretBytes?
    public internal(set) var nonce: UInt64 = 0
    /// The protocol's cipher functions.
    public let cipher: NoiseCipher

    init(key: SecretBytes? = nil, cipher: NoiseCipher = .chachaPoly) {
        self.key = key
        self.cipher = cipher
    }

    public var hasKey: Bool { key != nil }

    /// "InitializeKey(key): Sets k = key. Sets n = 0."
    mutating func initializeKey(_ newKey: SecretBytes) {
        key = newKey
        nonce = 0
    }

    /// "EncryptWithAd(ad, plaintext): If k is non-empty returns ENCRYPT(k, n++, ad, plaintext). Otherwise returns plaintext."
    public mutating func encrypt(ad: [UInt8] = [], plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return plaintext }
        // "If incrementing n results in 2^64-1, then any further EncryptWithAd() or
        // DecryptWithAd() calls will signal an error."
        guard nonce < UInt64.max else { throw .nonceExhausted }
        let out = cipher.encrypt(key: key, nonce: nonce, ad: ad, plaintext: plaintext)
        nonce += 1
        return out
    }

    /// "If an authentication failure occurs in DECRYPT() then n is not incremented."
    public mutating func decrypt(ad: [UInt8] = [], ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce < UInt64.max else { throw .nonceExhausted }
        guard let out = cipher.decrypt(key: key, nonce: nonce, ad: ad, ciphertext: ciphertext) else {
            throw .decryptionFailed
        }
        nonce += 1
        return out
    }

    /// This cipher's key as a data-path `TransportKey` (nil before a key is set).
    /// The TransportKey's counter is the caller's, independent of `nonce`.
    public var transportKey: TransportKey? { key.map { TransportKey(secret: $0, cipher: cipher) } }
}

// MARK: - NoiseSymmetricState (§5.2)

struct NoiseSymmetricState: Sendable {
    var cipher: NoiseCipherState
    var chainingKey: SecretBytes
    var hash: [UInt8]

    /// "If protocol_name is less than or equal to HASHLEN bytes in length, sets h equal
    /// to protocol_name with zero bytes appended to make HASHLEN bytes. Otherwise sets
    /// h = HASH(protocol_name). Sets ck = h."
    /// HASH: BLAKE2b for Whalescale's suite, BLAKE2s for WireGuard's.
    let hashFunction: NoiseHash

    init(protocolName: [UInt8], hash hashFunction: NoiseHash = .blake2b, cipher: NoiseCipher = .chachaPoly) {
        self.hashFunction = hashFunction
        self.cipher = NoiseCipherState(cipher: cipher)
        let hashLength = hashFunction.hashLength
        if protocolName.count <= hashLength {
            hash = protocolName + [UInt8](repeating: 0, count: hashLength - protocolName.count)
        } else {
            hash = hashFunction.hash([protocolName])
        }
        chainingKey = SecretBytes(copying: hash)
    }

    /// "Sets ck, temp_k = HKDF(ck, input_key_material, 2). If HASHLEN is 64, then
    /// truncates temp_k to 32 bytes. Calls InitializeKey(temp_k)."
    mutating func mixKey(_ inputKeyMaterial: some ByteView) {
        let out = hashFunction.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        chainingKey = out[0]
        cipher.initializeKey(out[1].prefix(32))
    }

    /// "Sets h = HASH(h || data)."
    mutating func mixHash(_ data: some ByteView) {
        hash = hashFunction.hash([hash, data])
    }

    /// "Sets ck, temp_h, temp_k = HKDF(ck, input_key_material, 3). Calls MixHash(temp_h).
    /// If HASHLEN is 64, then truncates temp_k to 32 bytes. Calls InitializeKey(temp_k)." (psk tokens)
    mutating func mixKeyAndHash(_ inputKeyMaterial: some ByteView) {
        let out = hashFunction.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 3)
        chainingKey = out[0]
        mixHash(out[1])
        cipher.initializeKey(out[2].prefix(32))
    }

    /// "Sets ciphertext = EncryptWithAd(h, plaintext), calls MixHash(ciphertext)."
    mutating func encryptAndHash(_ plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let ciphertext = try cipher.encrypt(ad: hash, plaintext: plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// "Sets plaintext = DecryptWithAd(h, ciphertext), calls MixHash(ciphertext)."
    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let plaintext = try cipher.decrypt(ad: hash, ciphertext: ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// "Sets temp_k1, temp_k2 = HKDF(ck, zerolen, 2). [Truncates to 32 bytes.] Creates two
    /// new NoiseCipherState objects c1 and c2. ... Returns the pair (c1, c2)."
    func split() -> (NoiseCipherState, NoiseCipherState) {
        let out = hashFunction.hkdf(chainingKey: chainingKey, inputKeyMaterial: [UInt8](), outputs: 2)
        return (NoiseCipherState(key: out[0].prefix(32), cipher: cipher.cipher),
                NoiseCipherState(key: out[1].prefix(32), cipher: cipher.cipher))
    }
}

// MARK: - Handshake patterns (§7)

public enum NoiseToken: Sendable, Equatable {
    case e, s, ee, es, se, ss, psk
}

/// A handshake pattern: pre-messages and message token lists, the first message
/// from the initiator and then alternating.
public struct NoisePattern: Sendable, Equatable {
    public let name: String
    public let initiatorPreMessage: [NoiseToken]
    public let responderPreMessage: [NoiseToken]
    public let messages: [[NoiseToken]]

    /// One-way patterns (N, K, X) have a single message and transport only from initiator to responder.
    public var isOneWay: Bool { messages.count == 1 }
    public var usesPSK: Bool { messages.contains { $0.contains(.psk) } }
    public var pskCount: Int { messages.reduce(0) { $0 + $1.filter { $0 == .psk }.count } }

    private static let base: [String: (pre: ([NoiseToken], [NoiseToken]), messages: [[NoiseToken]])] = [
        "N": (([], [.s]), [[.e, .es]]),
        "K": (([.s], [.s]), [[.e, .es, .ss]]),
        "X": (([], [.s]), [[.e, .es, .s, .ss]]),
        "NN": (([], []), [[.e], [.e, .ee]]),
        "NK": (([], [.s]), [[.e, .es], [.e, .ee]]),
        "NX": (([], []), [[.e], [.e, .ee, .s, .es]]),
        "KN": (([.s], []), [[.e], [.e, .ee, .se]]),
        "KK": (([.s], [.s]), [[.e, .es, .ss], [.e, .ee, .se]]),
        "KX": (([.s], []), [[.e], [.e, .ee, .se, .s, .es]]),
        "XN": (([], []), [[.e], [.e, .ee], [.s, .se]]),
        "XK": (([], [.s]), [[.e, .es], [.e, .ee], [.s, .se]]),
        "XX": (([], []), [[.e], [.e, .ee, .s, .es], [.s, .se]]),
        "IN": (([], []), [[.e, .s], [.e, .ee, .se]]),
        "IK": (([], [.s]), [[.e, .es, .s, .ss], [.e, .ee, .se]]),
        "IX": (([], []), [[.e, .s], [.e, .ee, .se, .s, .es]]),
    ]

    /// "IK", "IKpsk2", "XXpsk0+psk3", ... ; nil for anything else.
    /// §9.2: "psk0" puts a psk token at the start of the first message; "pskN" (N ≥ 1)
    /// at the end of the Nth message.
    public static func named(_ name: String) -> NoisePattern? {
        let baseName = String(name.prefix { $0.isUppercase })
        guard let shape = base[baseName] else { return nil }
        var messages = shape.messages
        let modifiers = name.dropFirst(baseName.count)
        if !modifiers.isEmpty {
            for modifier in modifiers.split(separator: "+", omittingEmptySubsequences: false) {
                guard modifier.hasPrefix("psk"), let n = Int(modifier.dropFirst(3)), n >= 0, n <= messages.count,
                      String(n) == modifier.dropFirst(3) else { return nil }
                if n == 0 { messages[0].insert(.psk, at: 0) } else { messages[n - 1].append(.psk) }
            }
        }
        return NoisePattern(name: name, initiatorPreMessage: shape.pre.0, responderPreMessage: shape.pre.1, messages: messages)
    }
}

/// A parsed protocol name: "Noise_" pattern "_" DH "_" cipher "_" hash (§8).
public struct NoiseProtocol: Sendable, Equatable {
    public let name: String
    public let pattern: NoisePattern
    /// BLAKE2b or BLAKE2s (libb2, Blake2s.swift).
    public let hash: NoiseHash
    /// ChaChaPoly, or AESGCM where this CPU has AES-NI.
    public let cipher: NoiseCipher

    /// Throws `unsupportedSuite` for other primitives (and for AESGCM without AES-NI),
    /// `unsupportedPattern` for other patterns.
    public init(name: String) throws(NoiseError) {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "Noise" else { throw .unsupportedPattern(name) }
        // Check the suite first: a 448 or SHA256 vector (or AESGCM without AES-NI) is
        // "unsupported suite" whatever its pattern.
        guard parts[2] == "25519", let cipher = NoiseCipher(noiseName: parts[3]), cipher.isAvailable,
              let hash = NoiseHash(rawValue: String(parts[4])) else {
            throw .unsupportedSuite("\(parts[2])_\(parts[3])_\(parts[4])")
        }
        guard let pattern = NoisePattern.named(String(parts[1])) else { throw .unsupportedPattern(String(parts[1])) }
        self.name = name
        self.pattern = pattern
        self.hash = hash
        self.cipher = cipher
    }
}

// MARK: - NoiseHandshakeState (§5.3)

/// A Noise handshake in progress, driven by its pattern's message tokens.
///
/// Use: `writeMessage` / `readMessage` in turn until `isComplete`, then `split()`.
/// Both work on a copy of the state and commit only on success.
public struct NoiseHandshakeState: Sendable {
    public enum Role: Sendable { case initiator, responder }

    public let noiseProtocol: NoiseProtocol
    public let role: Role
    var symmetric: NoiseSymmetricState
    var localStatic: DHKeyPair?
    var localEphemeral: DHKeyPair?
    public private(set) var remoteStatic: [UInt8]?
    public private(set) var remoteEphemeral: [UInt8]?
    var psks: [SecretBytes]
    var pskIndex = 0
    var messageIndex = 0
    /// Tests only: the ephemeral to use instead of a random one (Noise test vectors fix it).
    var fixedEphemeral: DHKeyPair?

    /// - Parameters:
    ///   - localStatic: this side's X25519 static key pair, when the pattern has one.
    ///   - remoteStatic: the peer's X25519 static public key, when the pattern pre-shares it (IK, NK, KK, ...).
    ///   - psks: one 32-byte key per psk token of the pattern, in order.
    public init(protocolName: String, role: Role, prologue: [UInt8] = [], localStatic: DHKeyPair? = nil,
                remoteStatic: [UInt8]? = nil, psks: [[UInt8]] = []) throws(NoiseError) {
        try self.init(protocolName: protocolName, role: role, prologue: prologue, localStatic: localStatic,
                      remoteStatic: remoteStatic, psks: psks.map { SecretBytes(copying: $0) }, fixedEphemeral: nil)
    }

    /// The full initializer, with a fixed ephemeral for test vectors.
    init(protocolName: String, role: Role, prologue: [UInt8], localStatic: DHKeyPair?, remoteStatic: [UInt8]?,
         psks: [SecretBytes], fixedEphemeral: DHKeyPair?) throws(NoiseError) {
        let proto = try NoiseProtocol(name: protocolName)
        let pattern = proto.pattern
        let isInitiator = role == .initiator
        let ourPre = isInitiator ? pattern.initiatorPreMessage : pattern.responderPreMessage
        let theirPre = isInitiator ? pattern.responderPreMessage : pattern.initiatorPreMessage
        // Which messages are ours: the initiator sends the even ones.
        let ourMessages = pattern.messages.enumerated().filter { ($0.offset % 2 == 0) == isInitiator }.map(\.element)
        let weSendStatic = ourPre.contains(.s) || ourMessages.contains { $0.contains(.s) }

        if weSendStatic && localStatic == nil { throw .missingKey("s") }
        if theirPre.contains(.s) {
            guard let remoteStatic else { throw .missingKey("rs") }
            guard remoteStatic.count == noiseDHLength else { throw .missingKey("rs (32 bytes)") }
        }
        guard psks.count == pattern.pskCount, psks.allSatisfy({ $0.count == 32 }) else { throw .badPSK }

        noiseProtocol = proto
        self.role = role
        symmetric = NoiseSymmetricState(protocolName: Array(protocolName.utf8), hash: proto.hash, cipher: proto.cipher)
        self.localStatic = localStatic
        // A remote static given for a pattern that transmits it is ignored: it will be learned.
        self.remoteStatic = theirPre.contains(.s) ? remoteStatic : nil
        self.psks = psks
        self.fixedEphemeral = fixedEphemeral

        // "Calls MixHash(prologue)."
        symmetric.mixHash(prologue)
        // "Calls MixHash() once for each public key listed in the pre-messages ... the
        // initiator's public keys are always hashed first."
        let initiatorStatic = isInitiator ? localStatic?.publicKey : self.remoteStatic
        let responderStatic = isInitiator ? self.remoteStatic : localStatic?.publicKey
        if pattern.initiatorPreMessage.contains(.s), let key = initiatorStatic { symmetric.mixHash(key) }
        if pattern.responderPreMessage.contains(.s), let key = responderStatic { symmetric.mixHash(key) }
    }

    public var isComplete: Bool { messageIndex >= noiseProtocol.pattern.messages.count }
    /// h: the transcript hash, for channel binding. Final once `isComplete`.
    public var handshakeHash: [UInt8] { symmetric.hash }

    private var isOurTurn: Bool { (messageIndex % 2 == 0) == (role == .initiator) }

    /// Writes the next handshake message carrying `payload` (§5.3 WriteMessage).
    public mutating func writeMessage(payload: [UInt8] = []) throws(NoiseError) -> [UInt8] {
        guard !isComplete else { throw .handshakeAlreadyComplete }
        guard isOurTurn else { throw .notOurTurn }
        var next = self
        let message = try next.write(payload: payload)
        self = next
        return message
    }

    /// Reads the peer's next handshake message and returns its payload (§5.3 ReadMessage).
    /// On any error the state is unchanged.
    public mutating func readMessage(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        try readMessage(message, mixBeforePayload: nil)
    }

    /// As above; `mixBeforePayload`, when given, is MixHash()ed after the message's
    /// tokens and before its payload is decrypted (Whalescale's cipher choice in a
    /// RESP, Handshake.swift: the writer mixes the same bytes at the same point).
    mutating func readMessage(_ message: [UInt8], mixBeforePayload: [UInt8]?) throws(NoiseError) -> [UInt8] {
        guard !isComplete else { throw .handshakeAlreadyComplete }
        guard !isOurTurn else { throw .notOurTurn }
        guard message.count <= noiseMaxMessageLength else { throw .messageTooLong }
        var next = self
        let payload = try next.read(message, mixBeforePayload: mixBeforePayload)
        self = next
        return payload
    }

    /// MixHash(data) outside the pattern's tokens: Whalescale mixes the initiator's
    /// cipher offer right after the pre-message keys (Handshake.swift), on both sides.
    mutating func mixHash(_ data: [UInt8]) {
        symmetric.mixHash(data)
    }

    /// (initiator→responder, responder→initiator), once the handshake is complete.
    public func split() throws(NoiseError) -> (initiatorToResponder: NoiseCipherState, responderToInitiator: NoiseCipherState) {
        guard isComplete else { throw .handshakeNotComplete }
        let (c1, c2) = symmetric.split()
        return (c1, c2)
    }

    /// Transport keys named from this side: the initiator sends with c1, the responder with c2.
    /// `cipher`: the data path's AEAD when it is not the protocol's own (Whalescale's
    /// negotiated AES-GCM under a ChaChaPoly handshake); nil: the protocol's.
    public func transportKeys(cipher: NoiseCipher? = nil) throws(NoiseError) -> TransportKeys {
        let (c1, c2) = try split()
        let cipher = cipher ?? noiseProtocol.cipher
        guard let k1 = c1.key.map({ TransportKey(secret: $0, cipher: cipher) }),
              let k2 = c2.key.map({ TransportKey(secret: $0, cipher: cipher) }) else { throw .handshakeNotComplete }
        return role == .initiator ? TransportKeys(send: k1, receive: k2) : TransportKeys(send: k2, receive: k1)
    }

    // MARK: Token processing (on the working copy)

    private mutating func write(payload: [UInt8]) throws(NoiseError) -> [UInt8] {
        var out: [UInt8] = []
        for token in noiseProtocol.pattern.messages[messageIndex] {
            switch token {
            case .e:
                // "Sets e = GENERATE_KEYPAIR(). Appends e.public_key to the buffer. Calls MixHash(e.public_key)."
                let e = fixedEphemeral ?? DHKeyPair.generate()
                localEphemeral = e
                out += e.publicKey
                symmetric.mixHash(e.publicKey)
                // §9.2: "in a PSK handshake ... MixKey(e.public_key)" after MixHash.
                if noiseProtocol.pattern.usesPSK { symmetric.mixKey(e.publicKey) }
            case .s:
                // "Appends EncryptAndHash(s.public_key) to the buffer."
                guard let s = localStatic else { throw .missingKey("s") }
                out += try symmetric.encryptAndHash(s.publicKey)
            case .ee, .es, .se, .ss:
                try mixDH(token)
            case .psk:
                try mixPSK()
            }
        }
        out += try symmetric.encryptAndHash(payload)
        guard out.count <= noiseMaxMessageLength else { throw .messageTooLong }
        messageIndex += 1
        return out
    }

    private mutating func read(_ message: [UInt8], mixBeforePayload: [UInt8]?) throws(NoiseError) -> [UInt8] {
        var cursor = 0
        func take(_ n: Int) throws(NoiseError) -> [UInt8] {
            guard message.count - cursor >= n else { throw .messageTooShort }
            defer { cursor += n }
            return Array(message[cursor..<(cursor + n)])
        }
        for token in noiseProtocol.pattern.messages[messageIndex] {
            switch token {
            case .e:
                // "Sets re to the next DHLEN bytes from the message. Calls MixHash(re.public_key)."
                let re = try take(noiseDHLength)
                remoteEphemeral = re
                symmetric.mixHash(re)
                if noiseProtocol.pattern.usesPSK { symmetric.mixKey(re) }
            case .s:
                // "Sets temp to the next DHLEN + 16 bytes of the message if HasKey() == True, or to the
                // next DHLEN bytes otherwise. Sets rs to DecryptAndHash(temp)."
                let temp = try take(noiseDHLength + (symmetric.cipher.hasKey ? noiseTagLength : 0))
                remoteStatic = try symmetric.decryptAndHash(temp)
            case .ee, .es, .se, .ss:
                try mixDH(token)
            case .psk:
                try mixPSK()
            }
        }
        // The rest is the payload (at least a tag once a key is set).
        let rest = Array(message[cursor...])
        if symmetric.cipher.hasKey && rest.count < noiseTagLength { throw .messageTooShort }
        if let mixBeforePayload { symmetric.mixHash(mixBeforePayload) }
        let payload = try symmetric.decryptAndHash(rest)
        messageIndex += 1
        return payload
    }

    /// ee, es, se, ss: "Calls MixKey(DH(...))". The first letter names the initiator's
    /// key, the second the responder's; each side uses its private half and the
    /// peer's public half.
    private mutating func mixDH(_ token: NoiseToken) throws(NoiseError) {
        let isInitiator = role == .initiator
        let (ours, theirs): (DHKeyPair?, [UInt8]?)
        switch token {
        case .ee: (ours, theirs) = (localEphemeral, remoteEphemeral)
        case .ss: (ours, theirs) = (localStatic, remoteStatic)
        case .es: (ours, theirs) = isInitiator ? (localEphemeral, remoteStatic) : (localStatic, remoteEphemeral)
        case .se: (ours, theirs) = isInitiator ? (localStatic, remoteEphemeral) : (localEphemeral, remoteStatic)
        default: return
        }
        guard let ours, let theirs else { throw .missingKey("\(token)") }
        guard let shared = Sodium.x25519(ours.privateKey, theirs) else { throw .invalidPublicKey }
        symmetric.mixKey(shared)
    }

    /// psk: "Calls MixKeyAndHash(psk)."
    private mutating func mixPSK() throws(NoiseError) {
        guard pskIndex < psks.count else { throw .badPSK }
        symmetric.mixKeyAndHash(psks[pskIndex])
        pskIndex += 1
    }
}
