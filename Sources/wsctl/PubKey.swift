import ArgumentParser
import Foundation
import Control
import Crypto

struct PubKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubkey",
        abstract: "Read a secret key on stdin and print the node's public key.",
        discussion: "The public key is what other members put in their [[peer]] public_key.")

    func run() throws {
        Sodium.initialize()
        let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        guard let secret = SecretKey(base64: input) else {
            throw ValidationError("stdin is not a secret key: expected standard base64 of 32 bytes")
        }
        print(Identity(secret: secret).publicKey.base64)
    }
}
