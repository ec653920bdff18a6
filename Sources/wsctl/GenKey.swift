import ArgumentParser
import Control
import Crypto
import Reactor

struct GenKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genkey",
        abstract: "Print a new secret key (standard base64 of a 32-byte Ed25519 seed).",
        discussion: """
            Keep it private: `(umask 077; wsctl genkey > node.key)`. When standard output is a \
            regular file, wsctl makes it owner-only (mode 0600) before writing the key, because \
            whalescaled refuses a key file that group or others can read.
            """)

    func run() throws {
        FileDescriptor.restrictToOwnerIfRegularFile(1)
        Sodium.initialize()
        print(SecretKey.generate().base64)
    }
}
