pub mod market;
pub mod watchlist;
