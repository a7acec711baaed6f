public enum GatewayStorePlaceholder {}
