import Crypto
import Foundation

/// Encrypts the secrets tenants store (MCP header values) with AES-256-GCM under the key of
/// `AGENTD_SECRETS_KEY`. Each value is sealed with a fresh nonce and bound to where it belongs
/// (tenant, agent, server, header) as associated data, so a ciphertext copied into another
/// tenant's or agent's row does not open. Stored as `enc:v1:<key id>:<base64 nonce+ciphertext+tag>`;
/// the key id (the first 8 hex digits of the key's SHA-256) tells a wrong key from a damaged value.
public struct SecretBox: Sendable {
    let key: SymmetricKey
    let keyID: String

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    static let prefix = "enc:v1:"

    /// From 32 bytes written as base64 (44 characters, `openssl rand -base64 32`) or 64 hex digits.
    public init(encoded: String) throws {
        let text = encoded.trimmingCharacters(in: .whitespacesAndNewlines)
        var bytes: [UInt8]?
        if text.count == 64, text.allSatisfy(\.isHexDigit) {
            bytes = stride(from: 0, to: 64, by: 2).compactMap { offset in
                let start = text.index(text.startIndex, offsetBy: offset)
                return UInt8(text[start..<text.index(start, offsetBy: 2)], radix: 16)
            }
        } else if let data = Data(base64Encoded: text) {
            bytes = Array(data)
        }
        guard let bytes, bytes.count == 32 else {
            throw Invalid(description: "AGENTD_SECRETS_KEY must be 32 random bytes as base64 (openssl rand -base64 32) or 64 hex digits")
        }
        key = SymmetricKey(data: bytes)
        keyID = SHA256.hash(data: bytes).prefix(4).map { String(format: "%02x", $0) }.joined()
    }


    func seal(_ plaintext: String, context: String) throws -> String {
        let box = try AES.GCM.seal(Data(plaintext.utf8), using: key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw Invalid(description: "AES-GCM gave no combined form") }
        return Self.prefix + keyID + ":" + combined.base64EncodedString()
    }

    func open(_ sealed: String, context: String) throws -> String {
        let parts = sealed.dropFirst(Self.prefix.count).split(separator: ":", maxSplits: 1)
        guard sealed.hasPrefix(Self.prefix), parts.count == 2, let data = Data(base64Encoded: String(parts[1])) else {
            throw Invalid(description: "a stored secret is damaged")
        }
        guard parts[0] == keyID else {
            throw Invalid(description: "a stored secret was sealed under another AGENTD_SECRETS_KEY (key id \(parts[0]), this one is \(keyID))")
        }
        do {
            let plaintext = try AES.GCM.open(try AES.GCM.SealedBox(combined: data), using: key, authenticating: Data(context.utf8))
            return String(decoding: plaintext, as: UTF8.self)
        } catch {
            throw Invalid(description: "a stored secret does not open: damaged, or moved from where it was stored")
        }
    }
}
