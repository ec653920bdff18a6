import ArgumentParser
import Foundation
import Control
import Crypto

struct PubKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubkey",
        abstract: "Read a secret key on stdin and print the node's public key.",
        discussion: """
            The public key is what other members put in their [[peer]] public_key. With             --wireguard, the node's X25519 static key instead: what a stock WireGuard peer puts             in its [Peer] PublicKey for this node (one secret serves both; DESIGN §3).
            """)

    @Flag(help: "Print the X25519 key stock WireGuard peers configure for this node.") var wireguard = false

    func run() throws {
        Sodium.initialize()
        let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        guard let secret = SecretKey(base64: input) else {
            throw ValidationError("stdin is not a secret key: expected standard base64 of 32 bytes")
        }
        let identity = Identity(secret: secret)
        print(wireguard ? identity.wireGuardPublicKey : identity.publicKey.base64)
    }
}
