//! A component that does not export the `level:api/handler` interface: the
//! host must refuse to load it.

fn main() {
    println!("not a plugin");
}
