//! Sign in: the token's form, or the word that the browser's credentials are needed.

use maud::{html, Markup};

/// The sign-in form, with an error where the last try was wrong.
pub(crate) fn sign_in(base: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p class="error" { (error) }
        }
        form method="post" action={ (base) "/login" } class="filters" {
            label {
                "Console token"
                input type="password" name="token" id="token" autocomplete="current-password"
                    required;
            }
            button type="submit" id="sign-in" { "Sign in" }
        }
    }
}

/// What a page behind basic credentials says without them.
pub(crate) fn credentials_needed() -> Markup {
    html! { p { "This page needs the console's credentials." } }
}
