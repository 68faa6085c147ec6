//! The router: HTTP (OpenAI shape) and gRPC front ends over one gateway core
