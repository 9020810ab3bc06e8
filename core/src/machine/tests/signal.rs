use super::T;
