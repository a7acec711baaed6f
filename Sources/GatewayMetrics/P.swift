public enum GatewayMetricsPlaceholder {}
