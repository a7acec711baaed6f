public enum GatewayAdminPlaceholder {}
