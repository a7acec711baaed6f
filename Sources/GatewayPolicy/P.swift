public enum GatewayPolicyPlaceholder {}
