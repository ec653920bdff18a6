import ArgumentParser
import Control
import Crypto

struct GenKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genkey",
        abstract: "Print a new secret key (standard base64 of a 32-byte Ed25519 seed).",
        discussion: "Keep it private: `wsctl genkey > node.key && chmod 600 node.key`.")

    func run() throws {
        Sodium.initialize()
        print(SecretKey.generate().base64)
    }
}
