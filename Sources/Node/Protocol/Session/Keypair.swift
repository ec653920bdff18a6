// One session's keys and their bookkeeping (send counter, replay window, ages):
// what the three slots of KeypairSlots.swift hold. Moved out of PeerSession.swift.

import Support
import Wire
import Crypto

/// Keys of one session and their bookkeeping. Stored inline (the replay window
/// too): moving between slots copies ~1 KiB, but the data path never allocates.
struct Keypair: Sendable {
    let keys: TransportKeys
    /// Index we chose: the peer puts it in every DATA it sends us under these keys.
    let localIndex: UInt32
    /// Index the peer chose: we put it in every DATA we send.
    let remoteIndex: UInt32
    let createdAt: Instant
    /// True if we initiated the handshake that made these keys: only the
    /// initiator rekeys by age (whitepaper §6.2), so both sides do not race.
    let isInitiator: Bool
    var sendCounter: UInt64 = 0
    /// Set when sessions are sharded (SessionShard.swift, 1..N reactors): the
    /// owning shard seals data and the session layer seals keepalives and
    /// control messages under the same keys, so the counter is one both take
    /// from (atomic across reactors). Nil (not sharded): `sendCounter` is it.
    let shared: (any SharedSendCounter)?
    var replay: ReplayWindow

    init(keys: TransportKeys, localIndex: UInt32, remoteIndex: UInt32, createdAt: Instant, isInitiator: Bool,
         timings: SessionTimings, shared: (any SharedSendCounter)? = nil) {
        self.keys = keys
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.createdAt = createdAt
        self.isInitiator = isInitiator
        self.shared = shared
        self.replay = ReplayWindow(limit: timings.rejectAfterMessages)
    }

    /// The counter the next sealed packet gets.
    var nextCounter: UInt64 { shared?.current ?? sendCounter }

    /// `badFlags`: header flags under keys that did not negotiate them (nothing sealed).
    enum SealOutcome { case sealed(rekeyDue: Bool), expired, badFlags }
    /// `badFlags`: a header flag under keys that did not negotiate them.
    enum OpenOutcome { case opened, expired, replay, authFailed, badFlags }

    func canSend(now: Instant, timings: SessionTimings) -> Bool {
        nextCounter < timings.rejectAfterMessages && now - createdAt < timings.rejectAfterTime
    }

    /// Writes the DATA header in front of the payload and encrypts the payload in
    /// place (tag behind it). The caller checked the geometry. `flags` (header byte 1)
    /// only under keys with `headerFlags`; they are sealed into the nonce (TransportKey.seal).
    /// `source`: the payload is read from there (sealed out of place into `base`).
    mutating func seal(_ base: UnsafeMutableRawPointer, payloadOffset: Int, payloadLength: Int, flags: UInt8 = 0,
                       source: UnsafeRawPointer? = nil, now: Instant, timings: SessionTimings) -> SealOutcome {
        guard flags == 0 || keys.headerFlags else { return .badFlags }
        guard canSend(now: now, timings: timings) else { return .expired }
        let counter: UInt64
        if let shared {
            counter = shared.take()
            guard counter < timings.rejectAfterMessages else { return .expired }  // taken concurrently
        } else {
            counter = sendCounter
            sendCounter += 1
        }
        DataMessage.writeHeader(DataMessage.Header(receiverIndex: remoteIndex, counter: counter, flags: flags),
                                at: base + (payloadOffset - DataMessage.headerSize))
        keys.send.seal(counter: counter, buffer: base + payloadOffset, length: payloadLength, flags: flags, source: source)
        // keepKeyFreshSending: by count on either side, by age on the initiator's.
        let rekey = counter + 1 >= timings.rekeyAfterMessages
            || (isInitiator && now - createdAt >= timings.rekeyAfterTime)
        return .sealed(rekeyDue: rekey)
    }

    /// Authenticates and decrypts a DATA message of `length` bytes at `base` in
    /// place (its header parsed already). The window moves only after authentication
    /// succeeded. Under keys with `headerFlags` the header's flags are part of the
    /// nonce (a flag changed in flight fails authentication); under others, any flag is refused.
    mutating func open(_ base: UnsafeMutableRawPointer, length: Int, counter: UInt64,
                       now: Instant, timings: SessionTimings) -> OpenOutcome {
        let flags = base.load(fromByteOffset: 1, as: UInt8.self)
        guard flags == 0 || keys.headerFlags else { return .badFlags }
        guard now - createdAt < timings.rejectAfterTime else { return .expired }
        guard replay.check(counter) else { return .replay }  // cheap, before the AEAD
        guard keys.receive.open(counter: counter, buffer: base + DataMessage.headerSize,
                                length: length - DataMessage.headerSize, flags: flags) else { return .authFailed }
        guard replay.accept(counter) else { return .replay }
        return .opened
    }
}
