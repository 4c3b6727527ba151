pub mod mschapv2;
