from django.urls import path

from accounts import views
from accounts.blocks import views as block_views
from accounts.challenges import views as challenge_views
from accounts.devices import views as device_views
from accounts.discovery import views as discovery_views
from accounts.profiles import views as profile_views
from accounts.registration import views as registration_views
from accounts.tokens import views as token_views
from accounts.totp import views as totp_views
from accounts.usernames import views as username_views
from accounts.verification import views as verification_views

urlpatterns: list = [
    path("v1/verification/session", verification_views.CreateSessionView.as_view()),
    path("v1/verification/session/<str:session_id>", verification_views.SessionView.as_view()),
    path("v1/verification/session/<str:session_id>/code", verification_views.SessionCodeView.as_view()),
    path("v1/registration", registration_views.RegistrationView.as_view()),
    path("v1/devices", device_views.DevicesView.as_view()),
    path("v1/devices/provisioning/code", device_views.ProvisioningCodeView.as_view()),
    path("v1/devices/link", device_views.LinkDeviceView.as_view()),
    path("v1/devices/wait_for_linked_device/<str:identifier>", device_views.wait_for_linked_device_endpoint),
    path("v1/devices/<int:device_id>", device_views.DeviceView.as_view()),
    path("v1/provisioning/<str:destination>", device_views.ProvisioningView.as_view()),
    path("v1/auth/token", token_views.AuthTokenView.as_view()),
    path("v1/auth/refresh", token_views.RefreshTokenView.as_view()),
    path("v1/accounts/whoami", views.WhoAmIView.as_view()),
    path("v1/accounts/attributes", views.AccountAttributesView.as_view()),
    path("v1/accounts/me", views.DeleteAccountView.as_view()),
    path("v1/accounts/registration_lock", views.RegistrationLockView.as_view()),
    path("v1/accounts/name", views.DeviceNameView.as_view()),
    path("v2/accounts/data_report", views.DataReportView.as_view()),
    path("v1/devices/capabilities", views.DeviceCapabilitiesView.as_view()),
    path("v2/accounts/phone_number_discoverability", views.DiscoverabilityView.as_view()),
    path("v1/accounts/totp", totp_views.TotpView.as_view()),
    path("v1/challenge", challenge_views.ChallengeView.as_view()),
    path("v1/challenge/push", challenge_views.PushChallengeView.as_view()),
    path("v1/accounts/account/<str:service_id>", views.AccountExistsView.as_view()),
    path("v1/directory/lookup", discovery_views.DirectoryLookupView.as_view()),
    path("v1/accounts/username_hash/reserve", username_views.ReserveView.as_view()),
    path("v1/accounts/username_hash/confirm", username_views.ConfirmView.as_view()),
    path("v1/accounts/username_hash", username_views.UsernameHashView.as_view()),
    path("v1/accounts/username_hash/<str:username_hash>", username_views.LookupView.as_view()),
    path("v1/accounts/username_link", username_views.LinkView.as_view()),
    path("v1/accounts/username_link/<str:handle>", username_views.LinkLookupView.as_view()),
    path("v1/accounts/blocks", block_views.BlocksView.as_view()),
    path("v1/accounts/blocks/<str:service_id>", block_views.BlockView.as_view()),
    path("v1/profile", profile_views.SetProfileView.as_view()),
    path("v1/profile/identity_check/batch", profile_views.IdentityCheckView.as_view()),
    path("v1/profile/<str:service_id>", profile_views.ProfileView.as_view()),
    path("v1/profile/<str:service_id>/<str:version>", profile_views.VersionedProfileView.as_view()),
    path("v1/profile/<str:service_id>/<str:version>/<str:credential_request>", profile_views.ProfileCredentialView.as_view()),
]
