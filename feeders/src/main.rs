#[allow(dead_code)]
mod demo;

fn main() {}
