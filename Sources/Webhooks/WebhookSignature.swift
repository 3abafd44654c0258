import Crypto
import Foundation

/// The `agentd-signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under
/// the webhook's secret, as Stripe signs its events, so a receiver checks where a delivery comes
/// from and that it is fresh (it refuses an old `t`: a replay).
public enum WebhookSignature {
    public static let header = "agentd-signature"

    public static func value(body: [UInt8], secret: String, timestamp: Int) -> String {
        "t=\(timestamp),v1=\(hex(body: body, secret: secret, timestamp: timestamp))"
    }

    static func hex(body: [UInt8], secret: String, timestamp: Int) -> String {
        var signed = Array("\(timestamp).".utf8)
        signed.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Array(secret.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined()
    }
}
