//! `forward!`: implements a trait for `Arc<T>` and `Box<T>` by forwarding every
//! method to `T`, so that a shared implementation is passed where the trait is asked
//! for (as `tower-service` does for `Service`).

/// Implements a capability for `Arc<T>` and `Box<T>` by forwarding every method to
/// `T`.
macro_rules! forward {
    ($trait:ident {
        $(async fn $m:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)*
        $(fn $sm:ident(&self $(, $sa:ident: $st:ty)*) -> $sr:ty;)*
    }) => {
        forward!(@impl Arc, $trait { $(async fn $m(&self $(, $a: $t)*) -> $r;)* $(fn $sm(&self $(, $sa: $st)*) -> $sr;)* });
        forward!(@impl Box, $trait { $(async fn $m(&self $(, $a: $t)*) -> $r;)* $(fn $sm(&self $(, $sa: $st)*) -> $sr;)* });
    };
    (@impl $ptr:ident, $trait:ident {
        $(async fn $m:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)*
        $(fn $sm:ident(&self $(, $sa:ident: $st:ty)*) -> $sr:ty;)*
    }) => {
        #[async_trait]
        impl<T: $trait + ?Sized> $trait for $ptr<T> {
            $(async fn $m(&self $(, $a: $t)*) -> $r {
                (**self).$m($($a),*).await
            })*
            $(fn $sm(&self $(, $sa: $st)*) -> $sr {
                (**self).$sm($($sa),*)
            })*
        }
    };
}
