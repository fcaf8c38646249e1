from django.urls import path

from accounts import challenge_views, device_views, registration_views, token_views, totp_views, verification_views, views

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
    path("v1/accounts/totp", totp_views.TotpView.as_view()),
    path("v1/challenge", challenge_views.ChallengeView.as_view()),
    path("v1/challenge/push", challenge_views.PushChallengeView.as_view()),
    path("v1/accounts/account/<str:service_id>", views.AccountExistsView.as_view()),
]
