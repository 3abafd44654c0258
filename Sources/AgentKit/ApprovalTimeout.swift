/// How long an approval may wait for a human, and what the service decides once it has waited
/// that long (`APPROVAL_TIMEOUT_S` / `APPROVAL_TIMEOUT_ACTION`, or an agent's own).
public struct ApprovalTimeout: Sendable, Equatable {
    public enum Action: String, Sendable, CaseIterable {
        case reject, accept

        public var decision: HumanDecision.Kind { self == .accept ? .accept : .reject }
    }

    public var seconds: Double
    public var action: Action

    /// Thirty days: longer waits are not approvals any more.
    public static let maxSeconds = 30 * 86_400

    public init(seconds: Double, action: Action) {
        self.seconds = seconds
        self.action = action
    }
}
