from django.urls import path

from groups import views

urlpatterns = [
    path("v2/groups", views.GroupView.as_view()),
    path("v2/groups/public_key", views.GroupPublicKeyView.as_view()),
    path("v2/groups/joined_at_version", views.GroupJoinedAtVersionView.as_view()),
    path("v2/groups/avatar/form", views.GroupAvatarFormView.as_view()),
    path("v2/groups/logs/<str:from_version>", views.GroupLogView.as_view()),
    path("v2/groups/join/<str:password>", views.GroupJoinInfoView.as_view()),
    # Without a password (Signal's path allows it): only someone already asking to join sees the group.
    path("v2/groups/join/", views.GroupJoinInfoView.as_view()),
]
